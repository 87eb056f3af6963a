package devserver

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The folder:
//
//	state.json           enroll codes, agents (key hashes), commands, acks,
//	                     results, recent progress and heartbeats
//	uploads/NNNNNNNNN.ndjson   one accepted upload each: a metadata line,
//	                     then the records as received
//	logs/NNNNNNNNN.ndjson      one POST /logs each, the same way
//
// Every file is written to a temporary name, synced and renamed, so a
// devserver killed at any point restarts with what it had answered. Uploads
// and logs are files of their own so that a large export does not rewrite
// state.json on every batch.
const (
	stateFile    = "state.json"
	uploadsDir   = "uploads"
	logsDir      = "logs"
	stateVersion = 1
)

// Caps on the history kept of best-effort reports.
const (
	maxProgress   = 10000
	maxHeartbeats = 1000
)

type state struct {
	Version    int                     `json:"version"`
	NextID     int64                   `json:"next_id"`
	Codes      map[string]*EnrollCode  `json:"enroll_codes"`
	Agents     map[string]*storedAgent `json:"agents"`
	Commands   []*Command              `json:"commands"`
	Acks       []*Ack                  `json:"acks"`
	Results    []*Result               `json:"results"`
	Progress   []*ProgressReport       `json:"progress"`
	Heartbeats []*HeartbeatReport      `json:"heartbeats"`
}

type storedAgent struct {
	Agent
	KeySHA256 string `json:"key_sha256"`
}

// blob is the metadata line of an upload or log file; Records stays empty
// there.
type blob struct {
	Upload
	file string
}

func newState() *state {
	return &state{Version: stateVersion, NextID: 1, Codes: map[string]*EnrollCode{}, Agents: map[string]*storedAgent{}}
}

// load reads the folder into s. A missing folder or state.json is an empty
// state.
func (s *Server) load() error {
	for _, d := range []string{s.dir, filepath.Join(s.dir, uploadsDir), filepath.Join(s.dir, logsDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	st := newState()
	b, err := os.ReadFile(filepath.Join(s.dir, stateFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(b, st); err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(s.dir, stateFile), err)
		}
		if st.Version != stateVersion {
			return fmt.Errorf("%s: version %d, this devserver reads %d", filepath.Join(s.dir, stateFile), st.Version, stateVersion)
		}
		if st.Codes == nil {
			st.Codes = map[string]*EnrollCode{}
		}
		if st.Agents == nil {
			st.Agents = map[string]*storedAgent{}
		}
	}
	s.st = st
	s.index()

	s.uploads, s.batches = nil, map[string]bool{}
	s.logs = nil
	next := int64(1)
	for _, kind := range []string{uploadsDir, logsDir} {
		blobs, err := readBlobs(filepath.Join(s.dir, kind))
		if err != nil {
			return err
		}
		for _, bl := range blobs {
			if n, err := strconv.ParseInt(strings.TrimSuffix(filepath.Base(bl.file), ".ndjson"), 10, 64); err == nil && n >= next {
				next = n + 1
			}
			if kind == uploadsDir {
				s.uploads = append(s.uploads, bl)
				s.batches[batchKey(bl.AgentID, bl.BatchID)] = true
			} else {
				s.logs = append(s.logs, bl)
			}
		}
	}
	s.nextBlob = next
	return nil
}

// index rebuilds the lookups of s.st.
func (s *Server) index() {
	s.keys = map[string]string{}
	for id, a := range s.st.Agents {
		s.keys[a.KeySHA256] = id
	}
	s.commands = map[string]*Command{}
	for _, c := range s.st.Commands {
		s.commands[c.ID] = c
	}
	s.acks = map[string]*Ack{}
	for _, a := range s.st.Acks {
		s.acks[a.CommandID] = a
	}
	s.results = map[string]*Result{}
	for _, r := range s.st.Results {
		s.results[r.CommandID] = r
	}
}

// readBlobs reads the metadata lines of a blob folder, in file order, and
// removes temporary files left by a crash.
func readBlobs(dir string) ([]*blob, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []*blob
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		if !strings.HasSuffix(name, ".ndjson") {
			continue
		}
		path := filepath.Join(dir, name)
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		line, err := bufio.NewReader(f).ReadBytes('\n')
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		bl := &blob{file: path}
		if err := json.Unmarshal(line, &bl.Upload); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, bl)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].file < out[j].file })
	return out, nil
}

// readBlobLines returns the lines of a blob after its metadata line.
func readBlobLines(path string) ([]json.RawMessage, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := bytes.Split(bytes.TrimSuffix(b, []byte{'\n'}), []byte{'\n'})
	out := make([]json.RawMessage, 0, len(lines))
	for _, l := range lines[1:] {
		out = append(out, json.RawMessage(l))
	}
	return out, nil
}

// writeBlob stores meta and lines as a new file of dir (uploadsDir or
// logsDir) and returns its path.
func (s *Server) writeBlob(dir string, meta *Upload, lines [][]byte) (string, error) {
	head, err := json.Marshal(meta)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	buf.Write(head)
	buf.WriteByte('\n')
	for _, l := range lines {
		buf.Write(l)
		buf.WriteByte('\n')
	}
	path := filepath.Join(s.dir, dir, fmt.Sprintf("%09d.ndjson", s.nextBlob))
	if err := writeFileAtomic(path, buf.Bytes()); err != nil {
		return "", err
	}
	s.nextBlob++
	return path, nil
}

// saveLocked writes state.json. On failure it reloads the folder, so that
// what the devserver answers next matches what a restart would see.
func (s *Server) saveLocked() error {
	b, err := json.MarshalIndent(s.st, "", "  ")
	if err == nil {
		err = writeFileAtomic(filepath.Join(s.dir, stateFile), b)
	}
	if err != nil {
		s.log.Error().Err(err).Msg("cannot write the devserver's state; reloading it from disk")
		if lerr := s.load(); lerr != nil {
			s.log.Error().Err(lerr).Msg("cannot reload the devserver's state")
		}
		return err
	}
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func (s *Server) newID(prefix string) string {
	id := prefix + strconv.FormatInt(s.st.NextID, 10)
	s.st.NextID++
	return id
}

func batchKey(agentID, batchID string) string { return agentID + "\n" + batchID }

// trim keeps the last n of a history.
func trim[T any](xs []T, n int) []T {
	if len(xs) <= n {
		return xs
	}
	return append(xs[:0:0], xs[len(xs)-n:]...)
}

func timePtr(t time.Time) *time.Time { return &t }
