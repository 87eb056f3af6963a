package devserver

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"
)

func (s *Server) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /admin/enroll-codes", s.adminAddCode)
	mux.HandleFunc("GET /admin/enroll-codes", s.adminCodes)
	mux.HandleFunc("GET /admin/agents", s.adminAgents)
	mux.HandleFunc("POST /admin/agents/{id}/revoke", s.adminRevoke(true))
	mux.HandleFunc("POST /admin/agents/{id}/unrevoke", s.adminRevoke(false))
	mux.HandleFunc("POST /admin/agents/{id}/commands", s.adminAddCommand)
	mux.HandleFunc("GET /admin/commands", s.adminCommands)
	mux.HandleFunc("GET /admin/acks", s.adminAcks)
	mux.HandleFunc("GET /admin/results", s.adminResults)
	mux.HandleFunc("GET /admin/results/{command}", s.adminResult)
	mux.HandleFunc("GET /admin/uploads", s.adminUploads)
	mux.HandleFunc("GET /admin/records", s.adminRecords)
	mux.HandleFunc("GET /admin/logs", s.adminLogs)
	mux.HandleFunc("GET /admin/progress", s.adminProgress)
	mux.HandleFunc("GET /admin/heartbeats", s.adminHeartbeats)
	mux.HandleFunc("GET /admin/faults", s.adminFaults)
	mux.HandleFunc("POST /admin/faults", s.adminSetFaults)
	mux.HandleFunc("DELETE /admin/faults", s.adminClearFaults)
	mux.HandleFunc("GET /admin/stats", s.adminStats)
	mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no admin endpoint %s %s; GET / lists them", r.Method, r.URL.Path)
	})
}

// decodeAdmin reads an admin request's JSON body; an empty body is {}.
func decodeAdmin(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "cannot read the body: %v", err)
		return false
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return true
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields() // a typo in a test's request should fail loudly
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "the body is not the expected JSON: %v", err)
		return false
	}
	return true
}

func (s *Server) adminAddCode(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Code      string     `json:"code"`
		ExpiresAt *time.Time `json:"expires_at"`
	}
	if !decodeAdmin(w, r, &req) {
		return
	}
	code, err := s.AddEnrollCode(req.Code, req.ExpiresAt)
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, ErrCodeExists) {
			status = http.StatusConflict
		}
		writeError(w, status, "%v", err)
		return
	}
	writeJSON(w, http.StatusCreated, code)
}

func (s *Server) adminCodes(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	out := make([]EnrollCode, 0, len(s.st.Codes))
	for _, c := range s.st.Codes {
		out = append(out, *c)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].Code < out[j].Code
	})
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) adminAgents(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	out := make([]Agent, 0, len(s.st.Agents))
	for _, a := range s.st.Agents {
		out = append(out, a.Agent)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		return out[i].EnrolledAt.Before(out[j].EnrolledAt) || (out[i].EnrolledAt.Equal(out[j].EnrolledAt) && out[i].ID < out[j].ID)
	})
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) adminRevoke(revoke bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		s.mu.Lock()
		defer s.mu.Unlock()
		a := s.st.Agents[id]
		if a == nil {
			writeError(w, http.StatusNotFound, "no agent %q", id)
			return
		}
		a.Revoked = revoke
		if err := s.saveLocked(); err != nil {
			writeError(w, http.StatusInternalServerError, "%v", err)
			return
		}
		s.log.Info().Str("agent", id).Bool("revoked", revoke).Msg("agent's API key revoked or restored")
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) adminAddCommand(w http.ResponseWriter, r *http.Request) {
	var req NewCommand
	if !decodeAdmin(w, r, &req) {
		return
	}
	c, err := s.AddCommand(r.PathValue("id"), req)
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, ErrNotFound) {
			status = http.StatusNotFound
		}
		writeError(w, status, "%v", err)
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

func (s *Server) adminCommands(w http.ResponseWriter, r *http.Request) {
	agent := r.URL.Query().Get("agent")
	s.mu.Lock()
	out := []Command{}
	for _, c := range s.st.Commands {
		if agent == "" || c.AgentID == agent {
			out = append(out, *c)
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) adminAcks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	out := []Ack{}
	for _, a := range s.st.Acks {
		if match(q, "agent", a.AgentID) && match(q, "command", a.CommandID) {
			out = append(out, *a)
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) adminResults(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	out := []Result{}
	for _, res := range s.st.Results {
		if match(q, "agent", res.AgentID) && match(q, "command", res.CommandID) {
			out = append(out, *res)
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) adminResult(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("command")
	s.mu.Lock()
	res := s.results[id]
	var out Result
	if res != nil {
		out = *res
	}
	s.mu.Unlock()
	if res == nil {
		writeError(w, http.StatusNotFound, "no result for command %q yet", id)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// selectBlobs copies the metadata of the blobs that match the query's
// agent, command and routing_key.
func (s *Server) selectBlobs(r *http.Request, blobs []*blob) []blob {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []blob
	for _, b := range blobs {
		if match(q, "agent", b.AgentID) && match(q, "command", b.CommandID) && match(q, "routing_key", b.RoutingKey) {
			out = append(out, *b)
		}
	}
	return out
}

func (s *Server) adminUploads(w http.ResponseWriter, r *http.Request) {
	withRecords := r.URL.Query().Get("records") != "0" && r.URL.Query().Get("records") != "false"
	out := []Upload{}
	s.mu.Lock()
	blobs := s.uploads
	s.mu.Unlock()
	for _, b := range s.selectBlobs(r, blobs) {
		u := b.Upload
		if withRecords {
			recs, err := readBlobLines(b.file)
			if err != nil {
				writeError(w, http.StatusInternalServerError, "%v", err)
				return
			}
			u.Records = recs
		}
		out = append(out, u)
	}
	writeJSON(w, http.StatusOK, out)
}

// adminRecords answers every record of the matching uploads, in the order
// they arrived: {"records": [...]}.
func (s *Server) adminRecords(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	blobs := s.uploads
	s.mu.Unlock()
	out := []json.RawMessage{}
	for _, b := range s.selectBlobs(r, blobs) {
		recs, err := readBlobLines(b.file)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "%v", err)
			return
		}
		out = append(out, recs...)
	}
	writeJSON(w, http.StatusOK, map[string]any{"records": out})
}

func (s *Server) adminLogs(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	blobs := s.logs
	s.mu.Unlock()
	out := []LogBatch{}
	for _, b := range s.selectBlobs(r, blobs) {
		lines, err := readBlobLines(b.file)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "%v", err)
			return
		}
		out = append(out, LogBatch{ID: b.ID, AgentID: b.AgentID, CommandID: b.CommandID, ReceivedAt: b.ReceivedAt, Count: b.Count, Lines: lines})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) adminProgress(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	out := []ProgressReport{}
	for _, p := range s.st.Progress {
		if match(q, "agent", p.AgentID) && match(q, "command", p.CommandID) {
			out = append(out, *p)
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) adminHeartbeats(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	out := []HeartbeatReport{}
	for _, h := range s.st.Heartbeats {
		if match(q, "agent", h.AgentID) {
			out = append(out, *h)
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) adminFaults(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	out := Faults{}
	for k, f := range s.faults {
		out[k] = *f
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) adminSetFaults(w http.ResponseWriter, r *http.Request) {
	var req Faults
	if !decodeAdmin(w, r, &req) {
		return
	}
	if err := s.SetFaults(req); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	s.adminFaults(w, r)
}

func (s *Server) adminClearFaults(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	s.faults = map[string]*Fault{}
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) adminStats(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	out := Stats{Requests: map[string]map[int]int{}}
	for k, m := range s.stats {
		c := map[int]int{}
		for st, n := range m {
			c[st] = n
		}
		out.Requests[k] = c
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// match reports whether the query's filter named key is absent or equals v.
func match(q map[string][]string, key, v string) bool {
	want, ok := q[key]
	return !ok || len(want) == 0 || want[0] == "" || want[0] == v
}
