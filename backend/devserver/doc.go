// Package devserver is the reference backend of PROTOCOL.md §1: a real HTTP
// server that tests of the agent run against (see devservertest) and that
// people trying the agent run with `courier dev-backend`.
//
// It implements the agent API under /api/v1/agent exactly, and checks what
// the agent sends more strictly than the protocol requires of a backend, so
// that a mistake in the agent shows up here rather than at a customer's:
//
//   - every request needs User-Agent: courier/<version>; every one after
//     enroll Authorization: Bearer <api key> (401 otherwise, also for a
//     revoked key);
//   - JSON bodies need Content-Type: application/json; uploads and logs
//     need application/x-ndjson with Content-Encoding: gzip, every line a
//     JSON object ending in a newline;
//   - an upload needs X-Routing-Key (export/…, onboard/… or events/…) and
//     X-Batch-Id "<routing key>:<incarnation>:<first>-<last>" matching the first and last
//     record's "seq", which must increase; a batch id seen before (per agent)
//     is answered 200 and not stored again; a new one 202;
//   - a result needs a known status, finished_at, started_at not after it,
//     an error when failed and an output that is an object; the first
//     result of a command is kept, repeats answer 204 and change nothing;
//   - a poll needs wait=1..60; it answers at once when the agent has
//     unacknowledged commands (every one, on every poll, until acked, even
//     when expired: the agent answers those "expired"), otherwise when a
//     command is added or wait ends;
//   - enroll codes are single use: unknown 401, expired 403, used 409.
//
// Every refusal is {"error": "..."} with 400 (or 401, 404, 413).
//
// State lives in Options.Dir, written atomically (temporary file, fsync,
// rename): state.json for codes, agents (API keys only as SHA-256), commands,
// acks, results and recent progress and heartbeats; uploads/ and logs/ hold a
// file per accepted batch. A devserver restarted on the same folder keeps
// its agents, commands and batch-id dedupe. Faults and request counts live in
// memory only.
//
// The admin API under /admin/ has no authentication (dev-backend binds
// loopback by default); AdminClient is its Go client. GET / lists it.
//
//	POST   /admin/enroll-codes              {"code"?, "expires_at"?} → 201 EnrollCode
//	GET    /admin/enroll-codes              → [EnrollCode]
//	GET    /admin/agents                    → [Agent]
//	POST   /admin/agents/{id}/revoke        → 204 (its requests get 401)
//	POST   /admin/agents/{id}/unrevoke      → 204
//	POST   /admin/agents/{id}/commands      NewCommand → 201 Command (wakes its poll)
//	GET    /admin/commands?agent=           → [Command] (deliveries, acked_at)
//	GET    /admin/acks?agent=&command=      → [Ack]
//	GET    /admin/results?agent=&command=   → [Result]
//	GET    /admin/results/{command}         → Result, or 404
//	GET    /admin/uploads?routing_key=&agent=&command=&records=0 → [Upload]
//	GET    /admin/records?routing_key=&agent=&command=           → {"records": [...]}
//	GET    /admin/logs?command=&agent=      → [LogBatch]
//	GET    /admin/progress?command=&agent=  → [ProgressReport]
//	GET    /admin/heartbeats?agent=         → [HeartbeatReport]
//	POST   /admin/faults                    Faults → the faults in place
//	GET    /admin/faults                    → Faults
//	DELETE /admin/faults                    → 204
//	GET    /admin/stats                     → Stats (requests by endpoint and status)
//
// A fault, for example {"uploads": {"status": 503, "count": 5, "retry_after": 1}},
// answers the next count requests of that endpoint (before authentication)
// with that status; see Fault.
package devserver
