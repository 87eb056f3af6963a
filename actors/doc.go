// Package actors holds courier's actor tree: the actor system's set-up and
// the guardian that supervises every long-lived actor. Nothing here knows an
// integration's or the queue's internals; they bring their own props.
package actors
