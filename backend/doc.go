// Package backend is the agent's client for the backend API (PROTOCOL.md §1):
// enroll, the command long poll, acks, results, progress, uploads, logs and
// heartbeats.
//
// Every failure a request can have is classified in one place (errors.go):
// an *Error carries a Kind (Retryable, Permanent, Unauthorized, TooLarge),
// the HTTP status, the backend's own {"error"} message and any Retry-After.
// Callers decide what to do from KindOf(err); Sink maps the same kinds onto
// the durable queue's errors (queue.ErrTooLarge, queue.PermanentError,
// queue.RetryAfterError), so the queue's delivery actors retry, halve or
// dead-letter a batch exactly as the protocol says.
//
// The API key is sent only in the Authorization header. It is never logged
// and never part of an error message: an answer of the backend that echoes
// it is redacted before it becomes an *Error.
//
// backend/devserver is the reference implementation of the other side; the
// tests here run every call against it over a real loopback connection.
package backend
