// Package sessions is the session tree of an export: tracking sessions that
// carry progress and nest, and model sessions that also send records of one
// model. Each session's last-processed token lives at its path, so siblings
// never overwrite each other, and is committed only after everything the
// session sent is durable: a crash re-sends at most the unfinished
// session's records, never leaves a gap.
package sessions
