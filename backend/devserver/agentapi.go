package devserver

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Known values the agent must send.
var (
	resultStatuses = map[string]bool{"succeeded": true, "failed": true, "cancelled": true, "expired": true}
	sessionKinds   = map[string]bool{"model": true, "tracking": true}
	sessionStates  = map[string]bool{"running": true, "done": true, "failed": true}
	routingKinds   = []string{"export/", "onboard/", "events/"}
)

func (s *Server) handleEnroll(w http.ResponseWriter, r *http.Request, _ *storedAgent) {
	var req struct {
		EnrollCode string  `json:"enroll_code"`
		Hostname   string  `json:"hostname"`
		OS         string  `json:"os"`
		Arch       string  `json:"arch"`
		Version    string  `json:"version"`
		System     *System `json:"system"`
	}
	if _, ok := s.decodeJSON(w, r, &req); !ok {
		return
	}
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"enroll_code", req.EnrollCode}, {"hostname", req.Hostname}, {"os", req.OS}, {"arch", req.Arch}, {"version", req.Version},
	} {
		if strings.TrimSpace(f.v) == "" {
			missing = append(missing, f.name)
		}
	}
	if req.System == nil {
		missing = append(missing, "system")
	}
	if len(missing) > 0 {
		writeError(w, http.StatusBadRequest, "enroll needs %s", strings.Join(missing, ", "))
		return
	}
	if req.System.CPUs < 0 || req.System.MemoryBytes < 0 {
		writeError(w, http.StatusBadRequest, "system.cpus and system.memory_bytes must not be negative")
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	t := now()
	code := s.st.Codes[req.EnrollCode]
	switch {
	case code == nil:
		writeError(w, http.StatusUnauthorized, "the enroll code is not known; ask for a new one")
		return
	case code.UsedBy != "":
		writeError(w, http.StatusConflict, "the enroll code was used already; ask for a new one")
		return
	case code.ExpiresAt != nil && !t.Before(*code.ExpiresAt):
		writeError(w, http.StatusForbidden, "the enroll code expired at %s; ask for a new one", code.ExpiresAt.Format(time.RFC3339))
		return
	}
	key, err := randomToken(32)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cannot make an API key: %v", err)
		return
	}
	sum := sha256.Sum256([]byte(key))
	a := &storedAgent{
		Agent: Agent{
			ID: s.newID("agt_"), EnrollCode: code.Code, Hostname: req.Hostname, OS: req.OS, Arch: req.Arch,
			Version: req.Version, UserAgent: r.UserAgent(), System: *req.System, EnrolledAt: t, LastSeen: timePtr(t),
		},
		KeySHA256: hex.EncodeToString(sum[:]),
	}
	s.st.Agents[a.ID] = a
	s.keys[a.KeySHA256] = a.ID
	code.UsedBy, code.UsedAt = a.ID, timePtr(t)
	if err := s.saveLocked(); err != nil {
		writeError(w, http.StatusInternalServerError, "cannot save the enrollment: %v", err)
		return
	}
	s.log.Info().Str("agent", a.ID).Str("hostname", a.Hostname).Str("version", a.Version).Msg("agent enrolled")
	writeJSON(w, http.StatusCreated, map[string]string{"agent_id": a.ID, "api_key": key})
}

// wireCommand is a command as a poll answers it.
type wireCommand struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	CreatedAt time.Time       `json:"created_at"`
	ExpiresAt *time.Time      `json:"expires_at,omitempty"`
	Params    json.RawMessage `json:"params"`
}

func (s *Server) handleCommands(w http.ResponseWriter, r *http.Request, a *storedAgent) {
	wait, err := strconv.Atoi(r.URL.Query().Get("wait"))
	if err != nil || wait < 1 || wait > 60 {
		writeError(w, http.StatusBadRequest, "wait must be a whole number of seconds from 1 to 60, not %q", r.URL.Query().Get("wait"))
		return
	}
	timer := time.NewTimer(time.Duration(wait) * time.Second)
	defer timer.Stop()
	for {
		s.mu.Lock()
		var out []wireCommand
		for _, c := range s.st.Commands {
			if c.AgentID == a.ID && c.AckedAt == nil {
				c.Deliveries++
				out = append(out, wireCommand{ID: c.ID, Type: c.Type, CreatedAt: c.CreatedAt, ExpiresAt: c.ExpiresAt, Params: c.Params})
			}
		}
		ch := s.wake[a.ID]
		if ch == nil {
			ch = make(chan struct{})
			s.wake[a.ID] = ch
		}
		s.mu.Unlock()
		if len(out) > 0 {
			writeJSON(w, http.StatusOK, map[string]any{"commands": out})
			return
		}
		select {
		case <-ch:
			continue
		case <-timer.C:
		case <-s.closed:
		case <-r.Context().Done():
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"commands": []wireCommand{}})
		return
	}
}

// agentCommand returns the agent's command named in the path, or answers
// 404.
func (s *Server) agentCommandLocked(w http.ResponseWriter, r *http.Request, a *storedAgent) *Command {
	id := r.PathValue("id")
	c := s.commands[id]
	if c == nil || c.AgentID != a.ID {
		writeError(w, http.StatusNotFound, "no command %q for agent %s", id, a.ID)
		return nil
	}
	return c
}

func (s *Server) handleAck(w http.ResponseWriter, r *http.Request, a *storedAgent) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.agentCommandLocked(w, r, a)
	if c == nil {
		return
	}
	if ack := s.acks[c.ID]; ack != nil {
		ack.Repeats++
	} else {
		t := now()
		c.AckedAt = timePtr(t)
		ack = &Ack{CommandID: c.ID, AgentID: a.ID, AckedAt: t}
		s.st.Acks = append(s.st.Acks, ack)
		s.acks[c.ID] = ack
	}
	if err := s.saveLocked(); err != nil {
		writeError(w, http.StatusInternalServerError, "cannot save the ack: %v", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleResult(w http.ResponseWriter, r *http.Request, a *storedAgent) {
	var req struct {
		Status     string          `json:"status"`
		StartedAt  *time.Time      `json:"started_at"`
		FinishedAt *time.Time      `json:"finished_at"`
		Error      *string         `json:"error"`
		Output     json.RawMessage `json:"output"`
	}
	body, ok := s.decodeJSON(w, r, &req)
	if !ok {
		return
	}
	switch {
	case !resultStatuses[req.Status]:
		writeError(w, http.StatusBadRequest, "status must be succeeded, failed, cancelled or expired, not %q", req.Status)
		return
	case req.FinishedAt == nil || req.FinishedAt.IsZero():
		writeError(w, http.StatusBadRequest, "finished_at is required (RFC 3339)")
		return
	case req.StartedAt != nil && req.StartedAt.After(*req.FinishedAt):
		writeError(w, http.StatusBadRequest, "started_at is after finished_at")
		return
	case req.Status == "failed" && (req.Error == nil || strings.TrimSpace(*req.Error) == ""):
		writeError(w, http.StatusBadRequest, "a failed result must say why in error")
		return
	}
	if out := bytes.TrimSpace(req.Output); len(out) > 0 && !bytes.Equal(out, []byte("null")) && out[0] != '{' {
		writeError(w, http.StatusBadRequest, "output must be a JSON object")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.agentCommandLocked(w, r, a)
	if c == nil {
		return
	}
	if res := s.results[c.ID]; res != nil {
		res.Repeats++
	} else {
		res = &Result{CommandID: c.ID, AgentID: a.ID, ReceivedAt: now(), Status: req.Status,
			StartedAt: req.StartedAt, FinishedAt: *req.FinishedAt, Output: req.Output, Body: body}
		if req.Error != nil {
			res.Error = *req.Error
		}
		s.st.Results = append(s.st.Results, res)
		s.results[c.ID] = res
		s.log.Info().Str("agent", a.ID).Str("command", c.ID).Str("status", res.Status).Msg("result received")
	}
	if err := s.saveLocked(); err != nil {
		writeError(w, http.StatusInternalServerError, "cannot save the result: %v", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleProgress(w http.ResponseWriter, r *http.Request, a *storedAgent) {
	var req struct {
		Sessions *[]ProgressSession `json:"sessions"`
	}
	if _, ok := s.decodeJSON(w, r, &req); !ok {
		return
	}
	if req.Sessions == nil {
		writeError(w, http.StatusBadRequest, "sessions is required (an array, possibly empty)")
		return
	}
	for i, ps := range *req.Sessions {
		switch {
		case len(ps.Path) == 0:
			writeError(w, http.StatusBadRequest, "sessions[%d].path is empty", i)
			return
		case !sessionKinds[ps.Kind]:
			writeError(w, http.StatusBadRequest, "sessions[%d].kind must be model or tracking, not %q", i, ps.Kind)
			return
		case !sessionStates[ps.State]:
			writeError(w, http.StatusBadRequest, "sessions[%d].state must be running, done or failed, not %q", i, ps.State)
			return
		case ps.Current < 0 || ps.Total < 0:
			writeError(w, http.StatusBadRequest, "sessions[%d]: current and total must not be negative", i)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.agentCommandLocked(w, r, a)
	if c == nil {
		return
	}
	s.st.Progress = trim(append(s.st.Progress, &ProgressReport{AgentID: a.ID, CommandID: c.ID, ReceivedAt: now(), Sessions: *req.Sessions}), maxProgress)
	if err := s.saveLocked(); err != nil {
		writeError(w, http.StatusInternalServerError, "cannot save the progress: %v", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleHeartbeat(w http.ResponseWriter, r *http.Request, a *storedAgent) {
	var req struct {
		Version string          `json:"version"`
		UptimeS *int64          `json:"uptime_s"`
		Running []string        `json:"running"`
		Queue   *HeartbeatQueue `json:"queue"`
	}
	if _, ok := s.decodeJSON(w, r, &req); !ok {
		return
	}
	switch {
	case req.Version == "":
		writeError(w, http.StatusBadRequest, "version is required")
		return
	case req.UptimeS == nil || *req.UptimeS < 0:
		writeError(w, http.StatusBadRequest, "uptime_s is required and must not be negative")
		return
	case req.Queue == nil:
		writeError(w, http.StatusBadRequest, "queue is required")
		return
	case req.Queue.PendingItems < 0 || req.Queue.PendingBytes < 0 || req.Queue.FailedItems < 0:
		writeError(w, http.StatusBadRequest, "queue counts must not be negative")
		return
	}
	if req.Running == nil {
		req.Running = []string{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Heartbeats = trim(append(s.st.Heartbeats, &HeartbeatReport{AgentID: a.ID, ReceivedAt: now(),
		Version: req.Version, UptimeS: *req.UptimeS, Running: req.Running, Queue: *req.Queue}), maxHeartbeats)
	if err := s.saveLocked(); err != nil {
		writeError(w, http.StatusInternalServerError, "cannot save the heartbeat: %v", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request, a *storedAgent) {
	key := r.Header.Get("X-Routing-Key")
	batchID := r.Header.Get("X-Batch-Id")
	commandID := r.Header.Get("X-Command-Id")
	if msg := checkRoutingKey(key); msg != "" {
		drain(r, s.maxUpload)
		writeError(w, http.StatusBadRequest, "%s", msg)
		return
	}
	first, last, msg := parseBatchID(key, batchID)
	if msg != "" {
		drain(r, s.maxUpload)
		writeError(w, http.StatusBadRequest, "%s", msg)
		return
	}
	if _, ok := r.Header["X-Command-Id"]; ok && strings.TrimSpace(commandID) == "" {
		drain(r, s.maxUpload)
		writeError(w, http.StatusBadRequest, "X-Command-Id is empty; leave it out when the batch belongs to no command")
		return
	}
	s.mu.Lock()
	seen := s.batches[batchKey(a.ID, batchID)]
	s.mu.Unlock()
	if seen {
		drain(r, s.maxUpload)
		writeJSON(w, http.StatusOK, map[string]any{"status": "duplicate", "batch_id": batchID})
		return
	}
	lines, status, msg := s.readNDJSON(r)
	if msg != "" {
		writeError(w, status, "%s", msg)
		return
	}
	prev := uint64(0)
	for i, l := range lines {
		var env struct {
			Seq *uint64 `json:"seq"`
		}
		if err := json.Unmarshal(l, &env); err != nil || env.Seq == nil {
			writeError(w, http.StatusBadRequest, "record %d has no \"seq\" (a whole number)", i+1)
			return
		}
		seq := *env.Seq
		switch {
		case i == 0 && seq != first:
			writeError(w, http.StatusBadRequest, "the first record's seq is %d, but X-Batch-Id says %d", seq, first)
			return
		case i > 0 && seq <= prev:
			writeError(w, http.StatusBadRequest, "record %d: seq %d does not increase (after %d)", i+1, seq, prev)
			return
		case i == len(lines)-1 && seq != last:
			writeError(w, http.StatusBadRequest, "the last record's seq is %d, but X-Batch-Id says %d", seq, last)
			return
		}
		prev = seq
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.batches[batchKey(a.ID, batchID)] { // a concurrent twin got here first
		writeJSON(w, http.StatusOK, map[string]any{"status": "duplicate", "batch_id": batchID})
		return
	}
	meta := Upload{ID: "upl_" + strconv.FormatInt(s.nextBlob, 10), AgentID: a.ID, RoutingKey: key, BatchID: batchID,
		CommandID: commandID, ReceivedAt: now(), Count: len(lines)}
	path, err := s.writeBlob(uploadsDir, &meta, lines)
	if err != nil {
		s.log.Error().Err(err).Msg("cannot store an upload")
		writeError(w, http.StatusInternalServerError, "cannot store the upload: %v", err)
		return
	}
	s.uploads = append(s.uploads, &blob{Upload: meta, file: path})
	s.batches[batchKey(a.ID, batchID)] = true
	s.log.Debug().Str("agent", a.ID).Str("routing_key", key).Str("batch", batchID).Int("records", len(lines)).Msg("upload stored")
	writeJSON(w, http.StatusAccepted, map[string]any{"status": "accepted", "batch_id": batchID, "records": len(lines)})
}

func (s *Server) handleLogs(w http.ResponseWriter, r *http.Request, a *storedAgent) {
	commandID := r.Header.Get("X-Command-Id")
	if strings.TrimSpace(commandID) == "" {
		drain(r, s.maxUpload)
		writeError(w, http.StatusBadRequest, "X-Command-Id is required: log lines belong to a command")
		return
	}
	lines, status, msg := s.readNDJSON(r)
	if msg != "" {
		writeError(w, status, "%s", msg)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	meta := Upload{ID: "log_" + strconv.FormatInt(s.nextBlob, 10), AgentID: a.ID, CommandID: commandID, ReceivedAt: now(), Count: len(lines)}
	path, err := s.writeBlob(logsDir, &meta, lines)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cannot store the log lines: %v", err)
		return
	}
	s.logs = append(s.logs, &blob{Upload: meta, file: path})
	writeJSON(w, http.StatusAccepted, map[string]any{"status": "accepted", "lines": len(lines)})
}

// readNDJSON reads a gzip NDJSON body: every line a JSON object. On
// failure it returns the status and message to answer.
func (s *Server) readNDJSON(r *http.Request) ([][]byte, int, string) {
	if !hasType(r, "application/x-ndjson") {
		drain(r, s.maxUpload)
		return nil, http.StatusBadRequest, fmt.Sprintf("Content-Type must be application/x-ndjson, not %q", r.Header.Get("Content-Type"))
	}
	if ce := r.Header.Get("Content-Encoding"); !strings.EqualFold(ce, "gzip") {
		drain(r, s.maxUpload)
		return nil, http.StatusBadRequest, fmt.Sprintf("Content-Encoding must be gzip, not %q", ce)
	}
	compressed, err := io.ReadAll(io.LimitReader(r.Body, s.maxUpload+1))
	if err != nil {
		return nil, http.StatusBadRequest, "cannot read the body: " + err.Error()
	}
	if int64(len(compressed)) > s.maxUpload {
		drain(r, 4*s.maxUpload)
		return nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes; send smaller batches", s.maxUpload)
	}
	zr, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		return nil, http.StatusBadRequest, "the body is not gzip: " + err.Error()
	}
	plain, err := io.ReadAll(io.LimitReader(zr, s.maxUpload+1))
	if err != nil {
		return nil, http.StatusBadRequest, "the body is not valid gzip: " + err.Error()
	}
	if int64(len(plain)) > s.maxUpload {
		return nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes decompressed; send smaller batches", s.maxUpload)
	}
	if len(plain) == 0 {
		return nil, http.StatusBadRequest, "the body has no lines"
	}
	if plain[len(plain)-1] != '\n' {
		return nil, http.StatusBadRequest, "the last line does not end with a newline"
	}
	lines := bytes.Split(plain[:len(plain)-1], []byte{'\n'})
	for i, l := range lines {
		l = bytes.TrimSuffix(l, []byte{'\r'})
		lines[i] = l
		if len(l) == 0 {
			return nil, http.StatusBadRequest, fmt.Sprintf("line %d is empty", i+1)
		}
		if l[0] != '{' || !json.Valid(l) {
			return nil, http.StatusBadRequest, fmt.Sprintf("line %d is not a JSON object", i+1)
		}
	}
	return lines, 0, ""
}

func checkRoutingKey(key string) string {
	if key == "" {
		return "X-Routing-Key is required"
	}
	for _, p := range routingKinds {
		if strings.HasPrefix(key, p) && len(key) > len(p) {
			return ""
		}
	}
	return fmt.Sprintf("X-Routing-Key must be export/<integration id>, onboard/<command id> or events/<routing key>, not %q", key)
}

// parseBatchID checks "<routing key>:<first>-<last>".
func parseBatchID(key, id string) (first, last uint64, msg string) {
	if id == "" {
		return 0, 0, "X-Batch-Id is required"
	}
	bad := fmt.Sprintf("X-Batch-Id must be %s:<store incarnation>:<first seq>-<last seq>, not %q", key, id)
	rest, ok := strings.CutPrefix(id, key+":")
	if !ok {
		return 0, 0, bad
	}
	inc, rest, ok := strings.Cut(rest, ":")
	if !ok || !validIncarnation(inc) {
		return 0, 0, bad
	}
	a, b, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, 0, bad
	}
	first, err1 := strconv.ParseUint(a, 10, 64)
	last, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil || first > last {
		return 0, 0, bad
	}
	return first, last, ""
}

// drain reads what is left of a body (up to n bytes), so that the client
// gets the answer instead of a connection reset under its upload.
func drain(r *http.Request, n int64) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, n))
}

func randomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// validIncarnation is the 16 lower-case hex digits a store incarnation is.
func validIncarnation(s string) bool {
	if len(s) != 16 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
