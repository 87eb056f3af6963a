// Package queue is courier's one durable path off the machine: a Pebble-backed
// FIFO per routing key, written by a single queue actor that group-commits
// every waiting request with one fsync, and drained by one delivery actor per
// active key.
//
// Only this package imports Pebble. Producers block until their items are
// durable, which is where backpressure comes from; quotas bound what may be
// pending, globally and per key.
package queue
