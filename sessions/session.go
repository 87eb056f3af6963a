package sessions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Store is the durable part under the tree: the queue. Append returns only
// once the payloads are durable (and blocks while the queue is full, which
// is how backpressure reaches an integration).
type Store interface {
	Append(ctx context.Context, key string, payloads [][]byte) error
	PutToken(ctx context.Context, path string, token string) error
	Token(path string) (token string, ok bool, err error)
}

// Kind tells a tracking session from a model session.
type Kind string

// State is a session's lifecycle.
type State string

const (
	Tracking Kind = "tracking"
	Model    Kind = "model"

	Running State = "running"
	Done    State = "done"
	Failed  State = "failed"
)

// Record is one object an integration emits. ID must be stable across
// exports of the same object: the backend dedupes re-sends by it.
type Record struct {
	ID   string
	Data any
}

// Envelope is a record as it travels (PROTOCOL.md §1 Uploads), less seq,
// which the queue assigns and the sink writes in front.
type Envelope struct {
	// Command is the backend command the record was exported for; the
	// backend sink sends it as X-Command-Id. Empty for a manual export.
	Command     string          `json:"command,omitempty"`
	Integration string          `json:"integration"`
	Model       string          `json:"model"`
	Session     []string        `json:"session"`
	ID          string          `json:"id"`
	Data        json.RawMessage `json:"data"`
}

// QueueKey is the routing key of an integration's records.
func QueueKey(integrationID string) string { return "export/" + integrationID }

// EntityError is an entity (a repo, a project) that failed while the export
// went on; it keeps its old token.
type EntityError struct {
	Path  []string `json:"path"`
	Error string   `json:"error"`
}

// RunOptions configure NewRun.
type RunOptions struct {
	IntegrationID string
	// CommandID is the backend command this export runs for, if any.
	CommandID string
	Store     Store
	// Reprocess ignores stored tokens: a full export. Tokens are still
	// written, so the next export is incremental again.
	Reprocess bool
	// MaxBatch bounds records per Append (default 500).
	MaxBatch int
}

// Run is one export of one integration: the root of its session tree.
type Run struct {
	opts      RunOptions
	key       string
	root      *Session
	lastTouch atomic.Int64 // unix nanos of the last progress or send
	// appending counts Appends in progress: one blocked on a full queue
	// is waiting for delivery, which is progress, not a hang.
	appending atomic.Int64

	mu           sync.Mutex
	records      map[string]int64
	entityErrors []EntityError
	usedToken    bool
}

// NewRun starts a session tree for one export.
func NewRun(opts RunOptions) *Run {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 500
	}
	r := &Run{opts: opts, key: QueueKey(opts.IntegrationID), records: map[string]int64{}}
	r.root = &Session{run: r, kind: Tracking, path: []string{opts.IntegrationID}, state: Running}
	r.touch()
	return r
}

// Root is the tracking session of the integration itself.
func (r *Run) Root() *Session { return r.root }

func (r *Run) touch() { r.lastTouch.Store(time.Now().UnixNano()) }

// LastActivity is when the integration last showed progress or sent
// records, or now while it waits for room in the queue; the stall watchdog
// compares it with the stall timeout.
func (r *Run) LastActivity() time.Time {
	if r.appending.Load() > 0 {
		return time.Now()
	}
	return time.Unix(0, r.lastTouch.Load())
}

// Stats is what an export did, for its result.
type Stats struct {
	Records      map[string]int64 `json:"records"`
	EntityErrors []EntityError    `json:"entity_errors"`
	// Incremental is true when at least one stored token was used.
	Incremental bool `json:"incremental"`
}

// Stats returns counts so far.
func (r *Run) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	recs := make(map[string]int64, len(r.records))
	for k, v := range r.records {
		recs[k] = v
	}
	return Stats{Records: recs, EntityErrors: slices.Clone(r.entityErrors), Incremental: r.usedToken}
}

// Session is one node of the tree. Its methods are safe for concurrent use.
type Session struct {
	run    *Run
	parent *Session
	kind   Kind
	model  string
	path   []string

	sending    sync.WaitGroup // Sends in progress: Done waits for them
	prefixOnce sync.Once
	prefix     []byte // the envelope up to "id", the same for every record
	mu         sync.Mutex
	current    int64
	total      int64
	state      State
	sendErr    error
	sent       int64
	kids       []*Session
}

// Path is the session's place in the tree: integration id, then one
// element per level ("org:acme", "repo:acme/api", "pull_request").
func (s *Session) Path() []string { return slices.Clone(s.path) }

// Kind is Tracking or Model.
func (s *Session) Kind() Kind { return s.kind }

func (s *Session) child(kind Kind, name, model string) *Session {
	c := &Session{run: s.run, parent: s, kind: kind, model: model, path: append(slices.Clone(s.path), name), state: Running}
	s.mu.Lock()
	s.kids = append(s.kids, c)
	s.mu.Unlock()
	s.run.touch()
	return c
}

// Track opens a tracking child session named name ("org:acme").
func (s *Session) Track(name string) *Session { return s.child(Tracking, name, "") }

// Open opens a model child session for records of model and returns it with
// its last committed token ("" on a first or a reprocessing export).
func (s *Session) Open(model string) (*Session, string, error) {
	c := s.child(Model, model, model)
	tok, err := c.LastToken()
	return c, tok, err
}

// LastToken is the token this session's path committed last time; "" when
// none, or when the run reprocesses history.
func (s *Session) LastToken() (string, error) {
	if s.run.opts.Reprocess {
		return "", nil
	}
	tok, ok, err := s.run.opts.Store.Token(TokenPath(s.path))
	if err != nil {
		return "", fmt.Errorf("session %s: read token: %w", strings.Join(s.path, "/"), err)
	}
	if ok {
		s.run.mu.Lock()
		s.run.usedToken = true
		s.run.mu.Unlock()
	}
	return tok, nil
}

// Progress sets how far the session is, for progress bars and the backend.
func (s *Session) Progress(current, total int64) {
	s.mu.Lock()
	s.current, s.total = current, total
	s.mu.Unlock()
	s.run.touch()
}

// Send makes records durable in the queue, in order, and returns once they
// are. It blocks while the queue is full.
func (s *Session) Send(ctx context.Context, recs ...Record) error {
	if s.kind != Model {
		return fmt.Errorf("session %s is a tracking session: open a model session to send records", strings.Join(s.path, "/"))
	}
	s.sending.Add(1)
	defer s.sending.Done()
	for len(recs) > 0 {
		n := min(len(recs), s.run.opts.MaxBatch)
		payloads := make([][]byte, n)
		for i, rec := range recs[:n] {
			b, err := s.envelope(rec)
			if err != nil {
				return s.failSend(err)
			}
			payloads[i] = b
		}
		s.run.appending.Add(1)
		err := s.run.opts.Store.Append(ctx, s.run.key, payloads)
		s.run.appending.Add(-1)
		if err != nil {
			s.run.touch()
			return s.failSend(err)
		}
		s.mu.Lock()
		s.sent += int64(n)
		s.mu.Unlock()
		s.run.mu.Lock()
		s.run.records[s.model] += int64(n)
		s.run.mu.Unlock()
		s.run.touch()
		recs = recs[n:]
	}
	return nil
}

// envelope encodes rec as an Envelope. The fields that are the same for
// every record of the session are encoded once; marshalling an Envelope
// with a RawMessage would re-scan and compact every record's data.
func (s *Session) envelope(rec Record) ([]byte, error) {
	if rec.ID == "" {
		return nil, errors.New("record without an id")
	}
	data, err := json.Marshal(rec.Data)
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", rec.ID, err)
	}
	s.prefixOnce.Do(func() {
		head, _ := json.Marshal(Envelope{Command: s.run.opts.CommandID, Integration: s.run.opts.IntegrationID, Model: s.model, Session: s.path})
		// head ends with ,"id":"","data":null}: keep what precedes "id".
		s.prefix = head[:bytes.LastIndex(head, []byte(`"id":`))]
	})
	id, _ := json.Marshal(rec.ID)
	b := make([]byte, 0, len(s.prefix)+len(id)+len(data)+16)
	b = append(b, s.prefix...)
	b = append(b, `"id":`...)
	b = append(b, id...)
	b = append(b, `,"data":`...)
	b = append(b, data...)
	return append(b, '}'), nil
}

func (s *Session) failSend(err error) error {
	s.mu.Lock()
	if s.sendErr == nil {
		s.sendErr = err
	}
	s.mu.Unlock()
	return err
}

// Done ends the session and commits token (unless empty) after every
// record the session sent is durable. A session whose sends failed, or
// with children still running, keeps its old token and Done says why.
func (s *Session) Done(ctx context.Context, token string) error {
	s.sending.Wait()
	s.mu.Lock()
	sendErr := s.sendErr
	var running []string
	for _, k := range s.kids {
		if k.State() == Running {
			running = append(running, k.path[len(k.path)-1])
		}
	}
	s.mu.Unlock()
	name := strings.Join(s.path, "/")
	if sendErr != nil {
		s.setState(Failed)
		return fmt.Errorf("session %s: not committing its token: a send failed: %w", name, sendErr)
	}
	if len(running) > 0 {
		return fmt.Errorf("session %s: children still running (%s): end them first", name, strings.Join(running, ", "))
	}
	if token != "" {
		if err := s.run.opts.Store.PutToken(ctx, TokenPath(s.path), token); err != nil {
			return fmt.Errorf("session %s: commit token: %w", name, err)
		}
	}
	s.setState(Done)
	return nil
}

// Checkpoint commits token after every record sent so far is durable,
// and keeps the session open: a long session (a big repository) resumes
// from its last checkpoint instead of from its start.
func (s *Session) Checkpoint(ctx context.Context, token string) error {
	s.sending.Wait()
	s.mu.Lock()
	sendErr := s.sendErr
	s.mu.Unlock()
	if sendErr != nil {
		return fmt.Errorf("session %s: not committing a checkpoint: a send failed: %w", strings.Join(s.path, "/"), sendErr)
	}
	if err := s.run.opts.Store.PutToken(ctx, TokenPath(s.path), token); err != nil {
		return fmt.Errorf("session %s: commit checkpoint: %w", strings.Join(s.path, "/"), err)
	}
	return nil
}

// abandonRunning ends, as failed, every descendant still running: a repo
// that fails takes the model session it was exporting with it, so progress
// never shows a session running under a failed one.
func (s *Session) abandonRunning() {
	s.mu.Lock()
	kids := append([]*Session(nil), s.kids...)
	s.mu.Unlock()
	for _, k := range kids {
		if k.State() == Running {
			k.setState(Failed)
		}
		k.abandonRunning()
	}
}

// Abandon ends the session as failed without reporting an entity error:
// for a session whose parent reports the failure (a repo that failed
// while one of its models was exporting). Its token stays as it was.
func (s *Session) Abandon() { s.setState(Failed) }

// Fail ends the session as failed: its token stays as it was. The failure
// is listed in the export's entity errors, and the export goes on.
func (s *Session) Fail(err error) {
	s.setState(Failed)
	s.abandonRunning()
	s.run.mu.Lock()
	s.run.entityErrors = append(s.run.entityErrors, EntityError{Path: s.Path(), Error: err.Error()})
	s.run.mu.Unlock()
}

// State is the session's state.
func (s *Session) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

func (s *Session) setState(st State) {
	s.mu.Lock()
	s.state = st
	s.mu.Unlock()
	s.run.touch()
}

// TokenPath is the key a session's token is stored under: the path as a
// JSON array, so names holding "/" (repo "acme/api") stay unambiguous.
func TokenPath(path []string) string {
	b, _ := json.Marshal(path)
	return string(b)
}
