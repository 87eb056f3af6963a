package devserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// APIPrefix is where the agent API lives.
const APIPrefix = "/api/v1/agent"

// DefaultMaxUploadBytes bounds an upload or log body, compressed and
// decompressed alike, when Options.MaxUploadBytes is zero.
const DefaultMaxUploadBytes = 32 << 20

// Options configures New.
type Options struct {
	// Dir holds the devserver's state; it is created when missing, and a
	// devserver started again on the same Dir carries on where it stopped.
	Dir    string
	Logger zerolog.Logger
	// MaxUploadBytes bounds an upload or a log batch; a larger one is
	// answered 413. Zero means DefaultMaxUploadBytes.
	MaxUploadBytes int64
}

// Server is the reference backend. Create it with New, serve Handler (or
// call Serve), and Close it before shutting the HTTP server down so that
// pending long polls answer at once.
type Server struct {
	dir       string
	log       zerolog.Logger
	maxUpload int64

	mu       sync.Mutex
	st       *state
	keys     map[string]string // key SHA-256 → agent id
	commands map[string]*Command
	acks     map[string]*Ack
	results  map[string]*Result
	uploads  []*blob
	batches  map[string]bool // batchKey → seen
	logs     []*blob
	nextBlob int64
	wake     map[string]chan struct{} // agent id → closed when a command is added
	faults   map[string]*Fault
	stats    map[string]map[int]int

	closeOnce sync.Once
	closed    chan struct{}
	handler   http.Handler
}

// New opens (or creates) the devserver's state in opts.Dir.
func New(opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("devserver: Dir is required")
	}
	s := &Server{
		dir:       opts.Dir,
		log:       opts.Logger.With().Str("component", "devserver").Logger(),
		maxUpload: opts.MaxUploadBytes,
		wake:      map[string]chan struct{}{},
		faults:    map[string]*Fault{},
		stats:     map[string]map[int]int{},
		closed:    make(chan struct{}),
	}
	if s.maxUpload <= 0 {
		s.maxUpload = DefaultMaxUploadBytes
	}
	if err := s.load(); err != nil {
		return nil, fmt.Errorf("devserver: %w", err)
	}
	s.handler = s.routes()
	return s, nil
}

// Handler serves the agent API under APIPrefix and the admin API under
// /admin/. The admin API has no authentication: bind loopback.
func (s *Server) Handler() http.Handler { return s.handler }

// Close answers every pending long poll (with no commands) and makes later
// polls answer at once, so that http.Server.Shutdown does not wait for
// them. Everything else keeps working; state is on disk already.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closed) })
}

// Serve serves on ln until ctx ends, then closes s and shuts the HTTP
// server down gracefully. It returns nil after a shutdown through ctx.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(s.log, "", 0),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		s.Close()
		return err
	case <-ctx.Done():
	}
	s.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	p := APIPrefix
	mux.Handle("POST "+p+"/enroll", s.endpoint(EndpointEnroll, false, s.handleEnroll))
	mux.Handle("GET "+p+"/commands", s.endpoint(EndpointCommands, true, s.handleCommands))
	mux.Handle("POST "+p+"/commands/{id}/ack", s.endpoint(EndpointAck, true, s.handleAck))
	mux.Handle("POST "+p+"/commands/{id}/result", s.endpoint(EndpointResults, true, s.handleResult))
	mux.Handle("POST "+p+"/commands/{id}/progress", s.endpoint(EndpointProgress, true, s.handleProgress))
	mux.Handle("POST "+p+"/uploads", s.endpoint(EndpointUploads, true, s.handleUpload))
	mux.Handle("POST "+p+"/logs", s.endpoint(EndpointLogs, true, s.handleLogs))
	mux.Handle("POST "+p+"/heartbeat", s.endpoint(EndpointHeartbeat, true, s.handleHeartbeat))
	mux.HandleFunc(p+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no endpoint %s %s; see PROTOCOL.md §1", r.Method, r.URL.Path)
	})
	s.adminRoutes(mux)
	mux.HandleFunc("GET /{$}", s.handleIndex)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no endpoint %s %s; the agent API is under %s, the admin API under /admin/", r.Method, r.URL.Path, APIPrefix)
	})
	return mux
}

// agentHandler handles an agent request; a is nil for enroll.
type agentHandler func(w http.ResponseWriter, r *http.Request, a *storedAgent)

// endpoint wraps a handler of the agent API: stats, faults, the
// User-Agent check and authentication, in that order.
func (s *Server) endpoint(name string, auth bool, h agentHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		defer func() { s.count(name, rec.status) }()
		if s.fault(rec, r, name) {
			return
		}
		if ua := r.UserAgent(); !strings.HasPrefix(ua, "courier/") || len(ua) == len("courier/") {
			writeError(rec, http.StatusBadRequest, "User-Agent must be courier/<version>, not %q", ua)
			return
		}
		var a *storedAgent
		if auth {
			if a = s.authenticate(rec, r); a == nil {
				return
			}
		}
		h(rec, r, a)
	})
}

// authenticate answers 401 and returns nil unless the request carries the
// bearer key of an agent that is not revoked.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) *storedAgent {
	h := r.Header.Get("Authorization")
	scheme, key, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(key) == "" {
		writeError(w, http.StatusUnauthorized, "missing Authorization: Bearer <api key>")
		return nil
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(key)))
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.st.Agents[s.keys[hex.EncodeToString(sum[:])]]
	if a == nil {
		writeError(w, http.StatusUnauthorized, "the API key is not known; enroll the agent again")
		return nil
	}
	if a.Revoked {
		writeError(w, http.StatusUnauthorized, "the API key of %s was revoked; enroll the agent again", a.ID)
		return nil
	}
	a.LastSeen = timePtr(now())
	return a
}

// fault applies the endpoint's fault, if any; true means it answered.
func (s *Server) fault(w http.ResponseWriter, r *http.Request, name string) bool {
	s.mu.Lock()
	f := s.faults[name]
	var fc Fault
	if f != nil {
		fc = *f
		if f.Count > 0 {
			f.Count--
			if f.Count == 0 {
				delete(s.faults, name)
			}
		}
	}
	s.mu.Unlock()
	if f == nil {
		return false
	}
	if fc.DelayMS > 0 {
		t := time.NewTimer(time.Duration(fc.DelayMS) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return true
		case <-s.closed:
		}
	}
	if fc.Status == 0 {
		return false
	}
	// Read the body, so that the client sees the answer rather than a
	// connection closed under its upload.
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 4*s.maxUpload))
	if fc.RetryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(fc.RetryAfter))
	}
	msg := fc.Error
	if msg == "" {
		msg = fmt.Sprintf("injected fault: %d %s", fc.Status, http.StatusText(fc.Status))
	}
	writeError(w, fc.Status, "%s", msg)
	return true
}

func (s *Server) count(name string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.stats[name]
	if m == nil {
		m = map[int]int{}
		s.stats[name] = m
	}
	m[status]++
}

// recorder remembers the status a handler answered.
type recorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cannot encode the answer: %v", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeError answers {"error": "..."}, the protocol's error body.
func writeError(w http.ResponseWriter, status int, format string, a ...any) {
	b, _ := json.Marshal(map[string]string{"error": fmt.Sprintf(format, a...)})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// hasType reports whether the request's Content-Type is want (parameters
// such as charset allowed).
func hasType(r *http.Request, want string) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && strings.EqualFold(mt, want)
}

// decodeJSON reads a JSON request body of at most Options.MaxUploadBytes
// into v; on failure it answers 400 (413) and returns false. Unknown fields
// are allowed (the protocol says they are ignored).
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) ([]byte, bool) {
	if !hasType(r, "application/json") {
		writeError(w, http.StatusBadRequest, "Content-Type must be application/json, not %q", r.Header.Get("Content-Type"))
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, s.maxUpload+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "cannot read the body: %v", err)
		return nil, false
	}
	if int64(len(body)) > s.maxUpload {
		drain(r, 4*s.maxUpload)
		writeError(w, http.StatusRequestEntityTooLarge, "the body is over %d bytes", s.maxUpload)
		return nil, false
	}
	if err := json.Unmarshal(body, v); err != nil {
		writeError(w, http.StatusBadRequest, "the body is not the expected JSON: %v", err)
		return nil, false
	}
	return body, true
}

func (s *Server) handleIndex(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, indexText)
}

const indexText = `courier dev-backend: the reference backend of PROTOCOL.md §1.

Agent API (bearer key):   ` + APIPrefix + `/...
Admin API (no auth; loopback only):
  POST   /admin/enroll-codes          {"code"?, "expires_at"?}
  GET    /admin/enroll-codes
  GET    /admin/agents
  POST   /admin/agents/{id}/revoke     POST /admin/agents/{id}/unrevoke
  POST   /admin/agents/{id}/commands   {"type", "params"?, "expires_at"?}
  GET    /admin/commands?agent=        GET /admin/acks?agent=&command=
  GET    /admin/results?agent=&command=    GET /admin/results/{command}
  GET    /admin/uploads?routing_key=&agent=&command=&records=0
  GET    /admin/records?routing_key=&agent=&command=
  GET    /admin/logs?command=&agent=   GET /admin/progress?command=&agent=
  GET    /admin/heartbeats?agent=
  GET    /admin/faults   POST /admin/faults {"uploads": {"status": 503, "count": 5, "retry_after": 1}}   DELETE /admin/faults
  GET    /admin/stats
`

// now is the devserver's clock, in UTC.
func now() time.Time { return time.Now().UTC() }
