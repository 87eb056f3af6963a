package devserver

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// ErrCodeExists is AddEnrollCode's error for a code that exists already.
var ErrCodeExists = errors.New("the enroll code exists already")

// AddEnrollCode adds a single-use enroll code; an empty code gets a random
// one ("ABCD-EFGH"). expiresAt nil means it never expires.
func (s *Server) AddEnrollCode(code string, expiresAt *time.Time) (EnrollCode, error) {
	if code == "" {
		code = randomCode()
	}
	if len(code) > 128 || strings.ContainsFunc(code, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return EnrollCode{}, fmt.Errorf("an enroll code is at most 128 printable ASCII characters without spaces, not %q", code)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.st.Codes[code]; c != nil {
		return *c, fmt.Errorf("%w: %s", ErrCodeExists, code)
	}
	c := &EnrollCode{Code: code, CreatedAt: now()}
	if expiresAt != nil {
		c.ExpiresAt = timePtr(expiresAt.UTC())
	}
	s.st.Codes[code] = c
	if err := s.saveLocked(); err != nil {
		return EnrollCode{}, err
	}
	return *c, nil
}

// EnrollCodes returns every enroll code, oldest first.
func (s *Server) EnrollCodes() []EnrollCode {
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
	return out
}

// AddCommand queues a command for an agent and wakes its long poll. Type
// must be set but is not checked against the protocol's types; Params may
// be any JSON (tests send params that do not parse) and defaults to {}.
func (s *Server) AddCommand(agentID string, nc NewCommand) (Command, error) {
	if strings.TrimSpace(nc.Type) == "" {
		return Command{}, errors.New("a command needs a type")
	}
	params := bytes.TrimSpace(nc.Params)
	if len(params) == 0 {
		params = []byte("{}")
	} else if !json.Valid(params) {
		return Command{}, errors.New("params is not JSON")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Agents[agentID] == nil {
		return Command{}, fmt.Errorf("no agent %q: %w", agentID, ErrNotFound)
	}
	c := &Command{ID: s.newID("cmd_"), AgentID: agentID, Type: nc.Type, CreatedAt: now(), Params: json.RawMessage(params)}
	if nc.ExpiresAt != nil {
		c.ExpiresAt = timePtr(nc.ExpiresAt.UTC())
	}
	s.st.Commands = append(s.st.Commands, c)
	s.commands[c.ID] = c
	if err := s.saveLocked(); err != nil {
		return Command{}, err
	}
	if ch := s.wake[agentID]; ch != nil {
		close(ch)
		delete(s.wake, agentID)
	}
	s.log.Info().Str("agent", agentID).Str("command", c.ID).Str("type", c.Type).Msg("command queued")
	return *c, nil
}

// SetFaults sets the fault of each endpoint named (a Count of 0 removes
// it) and leaves the others. Faults live in memory only.
func (s *Server) SetFaults(f Faults) error {
	for name, fault := range f {
		switch {
		case !slices.Contains(Endpoints, name):
			return fmt.Errorf("no endpoint %q; the endpoints are %s", name, strings.Join(Endpoints, ", "))
		case fault.Count == 0:
		case fault.Status != 0 && (fault.Status < 200 || fault.Status > 599):
			return fmt.Errorf("%s: status %d is not an HTTP status", name, fault.Status)
		case fault.Status == 0 && fault.DelayMS <= 0:
			return fmt.Errorf("%s: a fault needs a status or a delay_ms", name)
		case fault.DelayMS < 0 || fault.RetryAfter < 0:
			return fmt.Errorf("%s: delay_ms and retry_after must not be negative", name)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, fault := range f {
		if fault.Count == 0 {
			delete(s.faults, name)
			continue
		}
		fc := fault
		s.faults[name] = &fc
	}
	return nil
}

// randomCode is a code a person can type: two groups of four letters and
// digits, without the ones that look alike.
func randomCode() string {
	const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	out := make([]byte, 0, 9)
	for i, v := range b {
		if i == 4 {
			out = append(out, '-')
		}
		out = append(out, alphabet[int(v)%len(alphabet)])
	}
	return string(out)
}
