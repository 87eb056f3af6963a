package actors

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"

	"courier/backend"
)

// Bounds of the log shipper: best effort, never at the cost of memory. Under
// a long outage the oldest lines go first; data never goes this way.
const (
	shipBatchLines = 1000
	shipMaxLines   = 20_000 // per command
	shipEvery      = time.Second
)

// LogShipper is an io.Writer of JSON log lines. Lines that carry the id of
// a tracked command (the "command" field) are shipped to the backend's
// /logs for that command, in batches of at most 1 s or 1000 lines.
type LogShipper struct {
	Backend Backend
	Log     zerolog.Logger

	mu      sync.Mutex
	tracked map[string]bool
	lines   map[string][][]byte
	dropped map[string]int
	order   []string
}

// NewLogShipper returns a shipper; its loop runs as the "logship" actor.
func NewLogShipper(b Backend, log zerolog.Logger) *LogShipper {
	return &LogShipper{Backend: b, Log: log, tracked: map[string]bool{}, lines: map[string][][]byte{}, dropped: map[string]int{}}
}

// Track starts collecting the lines of command id.
func (s *LogShipper) Track(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.tracked[id] {
		s.tracked[id] = true
		s.order = append(s.order, id)
	}
}

// Untrack stops collecting; what was collected is still shipped.
func (s *LogShipper) Untrack(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tracked, id)
}

var commandField = []byte(`"command":"`)

// Write takes one JSON log line (zerolog writes one per call).
func (s *LogShipper) Write(p []byte) (int, error) {
	i := bytes.Index(p, commandField)
	if i < 0 {
		return len(p), nil
	}
	rest := p[i+len(commandField):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return len(p), nil
	}
	id := string(rest[:j])
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.tracked[id] {
		return len(p), nil
	}
	line := bytes.TrimRight(p, "\n")
	if !json.Valid(line) {
		return len(p), nil
	}
	buf := append(s.lines[id], append([]byte(nil), line...))
	if over := len(buf) - shipMaxLines; over > 0 {
		s.dropped[id] += over
		buf = buf[over:]
	}
	s.lines[id] = buf
	return len(p), nil
}

func (s *LogShipper) take() (id string, lines [][]byte, dropped int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.order) > 0 {
		id = s.order[0]
		buf := s.lines[id]
		if len(buf) == 0 {
			if !s.tracked[id] {
				s.order = s.order[1:]
				delete(s.lines, id)
				delete(s.dropped, id)
				continue
			}
			// Rotate so one quiet command does not hide the others.
			s.order = append(s.order[1:], id)
			if allEmpty(s.lines) {
				return "", nil, 0
			}
			continue
		}
		n := min(len(buf), shipBatchLines)
		lines = buf[:n:n]
		s.lines[id] = buf[n:]
		dropped, s.dropped[id] = s.dropped[id], 0
		s.order = append(s.order[1:], id)
		return id, lines, dropped
	}
	return "", nil, 0
}

func (s *LogShipper) giveBack(id string, lines [][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	buf := append(lines, s.lines[id]...)
	if over := len(buf) - shipMaxLines; over > 0 {
		s.dropped[id] += over
		buf = buf[over:]
	}
	s.lines[id] = buf
}

func allEmpty(m map[string][][]byte) bool {
	for _, v := range m {
		if len(v) > 0 {
			return false
		}
	}
	return true
}

func (s *LogShipper) run(ctx context.Context) error {
	bo := newBackoff(time.Second, 5*time.Minute)
	for {
		id, lines, dropped := s.take()
		if id == "" {
			if !sleepCtx(ctx, shipEvery) {
				return nil
			}
			continue
		}
		if dropped > 0 {
			s.Log.Warn().Int("lines", dropped).Msg("dropped the oldest log lines of a command: the backend did not take them in time")
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := s.Backend.Logs(cctx, id, lines)
		cancel()
		if err == nil {
			bo.Reset()
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		if backend.KindOf(err) == backend.Permanent {
			continue // the backend refuses these lines for good; drop them
		}
		s.giveBack(id, lines)
		if !sleepCtx(ctx, bo.NextBackOff()) {
			return nil
		}
	}
}

func newBackoff(initial, maxInterval time.Duration) *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = initial
	b.MaxInterval = maxInterval
	b.MaxElapsedTime = 0 // never give up: an agent waits for its backend
	b.Reset()
	return b
}
