package devserver

import (
	"encoding/json"
	"time"
)

// Endpoints of the agent API, by the names faults and stats use.
const (
	EndpointEnroll    = "enroll"    // POST /enroll
	EndpointCommands  = "commands"  // GET /commands (the long poll)
	EndpointAck       = "ack"       // POST /commands/{id}/ack
	EndpointResults   = "results"   // POST /commands/{id}/result
	EndpointProgress  = "progress"  // POST /commands/{id}/progress
	EndpointUploads   = "uploads"   // POST /uploads
	EndpointLogs      = "logs"      // POST /logs
	EndpointHeartbeat = "heartbeat" // POST /heartbeat
)

// Endpoints lists every endpoint name.
var Endpoints = []string{EndpointEnroll, EndpointCommands, EndpointAck, EndpointResults,
	EndpointProgress, EndpointUploads, EndpointLogs, EndpointHeartbeat}

// EnrollCode is a single-use code that enrolls one agent.
type EnrollCode struct {
	Code      string     `json:"code"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	UsedBy    string     `json:"used_by,omitempty"` // the agent it enrolled
	UsedAt    *time.Time `json:"used_at,omitempty"`
}

// Agent is an enrolled agent, as it described itself at enroll. Its API key
// is not shown: the devserver keeps only its SHA-256.
type Agent struct {
	ID         string     `json:"id"`
	EnrollCode string     `json:"enroll_code"`
	Hostname   string     `json:"hostname"`
	OS         string     `json:"os"`
	Arch       string     `json:"arch"`
	Version    string     `json:"version"`
	UserAgent  string     `json:"user_agent"`
	System     System     `json:"system"`
	EnrolledAt time.Time  `json:"enrolled_at"`
	Revoked    bool       `json:"revoked"`
	LastSeen   *time.Time `json:"last_seen,omitempty"`
}

// System is the "system" object of enroll.
type System struct {
	CPUs        int    `json:"cpus"`
	MemoryBytes int64  `json:"memory_bytes"`
	GitVersion  string `json:"git_version"`
}

// NewCommand is the body of POST /admin/agents/{id}/commands. Type is not
// checked, so that tests can send types the agent does not know; Params
// defaults to {}.
type NewCommand struct {
	Type      string          `json:"type"`
	Params    json.RawMessage `json:"params,omitempty"`
	ExpiresAt *time.Time      `json:"expires_at,omitempty"`
}

// Command is a command queued for an agent. It is delivered on every poll
// until AckedAt is set.
type Command struct {
	ID         string          `json:"id"`
	AgentID    string          `json:"agent_id"`
	Type       string          `json:"type"`
	CreatedAt  time.Time       `json:"created_at"`
	ExpiresAt  *time.Time      `json:"expires_at,omitempty"`
	Params     json.RawMessage `json:"params"`
	Deliveries int             `json:"deliveries"` // polls that returned it
	AckedAt    *time.Time      `json:"acked_at,omitempty"`
}

// Ack is the first acknowledgement of a command; Repeats counts later ones.
type Ack struct {
	CommandID string    `json:"command_id"`
	AgentID   string    `json:"agent_id"`
	AckedAt   time.Time `json:"acked_at"`
	Repeats   int       `json:"repeats"`
}

// Result is the first result posted for a command; Repeats counts later
// posts, which changed nothing. Body is the request body as received.
type Result struct {
	CommandID  string          `json:"command_id"`
	AgentID    string          `json:"agent_id"`
	ReceivedAt time.Time       `json:"received_at"`
	Repeats    int             `json:"repeats"`
	Status     string          `json:"status"`
	StartedAt  *time.Time      `json:"started_at,omitempty"`
	FinishedAt time.Time       `json:"finished_at"`
	Error      string          `json:"error"`
	Output     json.RawMessage `json:"output,omitempty"`
	Body       json.RawMessage `json:"body"`
}

// Upload is one accepted batch (a batch id seen again is not stored again).
// Records are the NDJSON lines as the agent sent them, decompressed.
type Upload struct {
	ID         string            `json:"id"`
	AgentID    string            `json:"agent_id"`
	RoutingKey string            `json:"routing_key"`
	BatchID    string            `json:"batch_id"`
	CommandID  string            `json:"command_id,omitempty"`
	ReceivedAt time.Time         `json:"received_at"`
	Count      int               `json:"count"`
	Records    []json.RawMessage `json:"records,omitempty"`
}

// LogBatch is one POST /logs.
type LogBatch struct {
	ID         string            `json:"id"`
	AgentID    string            `json:"agent_id"`
	CommandID  string            `json:"command_id"`
	ReceivedAt time.Time         `json:"received_at"`
	Count      int               `json:"count"`
	Lines      []json.RawMessage `json:"lines,omitempty"`
}

// ProgressReport is one POST /commands/{id}/progress.
type ProgressReport struct {
	AgentID    string            `json:"agent_id"`
	CommandID  string            `json:"command_id"`
	ReceivedAt time.Time         `json:"received_at"`
	Sessions   []ProgressSession `json:"sessions"`
}

// ProgressSession is one session of a progress report.
type ProgressSession struct {
	Path    []string `json:"path"`
	Kind    string   `json:"kind"`
	Current int64    `json:"current"`
	Total   int64    `json:"total"`
	State   string   `json:"state"`
}

// HeartbeatReport is one POST /heartbeat.
type HeartbeatReport struct {
	AgentID    string         `json:"agent_id"`
	ReceivedAt time.Time      `json:"received_at"`
	Version    string         `json:"version"`
	UptimeS    int64          `json:"uptime_s"`
	Running    []string       `json:"running"`
	Queue      HeartbeatQueue `json:"queue"`
}

// HeartbeatQueue is the "queue" object of a heartbeat.
type HeartbeatQueue struct {
	PendingItems int64 `json:"pending_items"`
	PendingBytes int64 `json:"pending_bytes"`
	FailedItems  int64 `json:"failed_items"`
}

// Fault makes the next Count requests to an endpoint fail (Count < 0: every
// request until the faults are cleared). The request waits DelayMS first
// (for timeout tests); then, when Status is set, it is answered with that
// status, {"error": Error} and, when RetryAfter > 0, Retry-After: RetryAfter
// seconds. A fault with a delay and no status only slows the endpoint down.
// A faulted request is answered before authentication and is not applied.
type Fault struct {
	Status     int    `json:"status,omitempty"`
	Count      int    `json:"count"`
	RetryAfter int    `json:"retry_after,omitempty"`
	Error      string `json:"error,omitempty"`
	DelayMS    int    `json:"delay_ms,omitempty"`
}

// Faults maps endpoint names (EndpointUploads, ...) to their fault. POST
// /admin/faults sets the endpoints it names and leaves the others; a Count
// of 0 removes that endpoint's fault.
type Faults map[string]Fault

// Stats counts the requests of each endpoint by the status they were
// answered with.
type Stats struct {
	Requests map[string]map[int]int `json:"requests"`
}

// Count is how many requests of endpoint were answered with status.
func (s Stats) Count(endpoint string, status int) int { return s.Requests[endpoint][status] }

// Total is how many requests endpoint had.
func (s Stats) Total(endpoint string) int {
	n := 0
	for _, c := range s.Requests[endpoint] {
		n += c
	}
	return n
}
