package backend

import (
	"encoding/json"
	"time"
)

// Command types (PROTOCOL.md §1, Commands).
const (
	CommandExport            = "export"
	CommandValidateConfig    = "validate-config"
	CommandExportOnboardData = "export-onboard-data"
	CommandCancel            = "cancel"
)

// Result statuses: every command gets exactly one.
const (
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
	StatusExpired   = "expired"
)

// Progress session kinds and states.
const (
	SessionModel    = "model"
	SessionTracking = "tracking"

	StateRunning = "running"
	StateDone    = "done"
	StateFailed  = "failed"
)

// EnrollRequest is the body of POST /enroll.
type EnrollRequest struct {
	EnrollCode string     `json:"enroll_code"`
	Hostname   string     `json:"hostname"`
	OS         string     `json:"os"`
	Arch       string     `json:"arch"`
	Version    string     `json:"version"`
	System     SystemInfo `json:"system"`
}

// SystemInfo describes the agent's machine at enroll.
type SystemInfo struct {
	CPUs        int    `json:"cpus"`
	MemoryBytes int64  `json:"memory_bytes"`
	GitVersion  string `json:"git_version"`
}

// EnrollResponse is the backend's answer to enroll. APIKey is a credential:
// store it (config.Secret), never log it.
type EnrollResponse struct {
	AgentID string `json:"agent_id"`
	APIKey  string `json:"api_key"`
}

// Command is one command of a poll.
type Command struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	CreatedAt time.Time       `json:"created_at"`
	ExpiresAt *time.Time      `json:"expires_at,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
}

// Result is a command's terminal result (POST /commands/{id}/result). Times
// are sent in UTC; a zero time is left out. Output is left out when empty.
type Result struct {
	Status     string          `json:"status"`
	StartedAt  time.Time       `json:"started_at,omitzero"`
	FinishedAt time.Time       `json:"finished_at,omitzero"`
	Error      string          `json:"error"`
	Output     json.RawMessage `json:"output,omitempty"`
}

// MarshalJSON writes the times in UTC, as the protocol requires.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	p := plain(r)
	if !p.StartedAt.IsZero() {
		p.StartedAt = p.StartedAt.UTC()
	}
	if !p.FinishedAt.IsZero() {
		p.FinishedAt = p.FinishedAt.UTC()
	}
	return json.Marshal(p)
}

// Progress is the body of POST /commands/{id}/progress.
type Progress struct {
	Sessions []ProgressSession `json:"sessions"`
}

// ProgressSession is one session of the tree: Kind is SessionModel or
// SessionTracking, State one of StateRunning, StateDone, StateFailed.
type ProgressSession struct {
	Path    []string `json:"path"`
	Kind    string   `json:"kind"`
	Current int64    `json:"current"`
	Total   int64    `json:"total"`
	State   string   `json:"state"`
}

// Heartbeat is the body of POST /heartbeat.
type Heartbeat struct {
	Version string     `json:"version"`
	UptimeS int64      `json:"uptime_s"`
	Running []string   `json:"running"`
	Queue   QueueStats `json:"queue"`
}

// QueueStats is the durable queue's state in a heartbeat.
type QueueStats struct {
	PendingItems int64 `json:"pending_items"`
	PendingBytes int64 `json:"pending_bytes"`
	FailedItems  int64 `json:"failed_items"`
}

// ResultsKey is the durable queue's routing key for results: Sink posts
// each of its messages to /commands/{id}/result.
const ResultsKey = "results"

// ResultMessage is the payload of a message under ResultsKey.
type ResultMessage struct {
	CommandID string `json:"command_id"`
	Result    Result `json:"result"`
}

// EncodeResult returns the queue payload that makes Sink post r as the
// result of command id.
func EncodeResult(commandID string, r Result) ([]byte, error) {
	return json.Marshal(ResultMessage{CommandID: commandID, Result: r})
}
