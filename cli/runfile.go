package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"courier/config"
	"courier/internal/atomicfile"
)

// runInfo is run/service.json: how the commands that talk to a running
// service-run (send, status, retry) find it. Written after the listener is
// bound, so it holds the real address even for --listen 127.0.0.1:0.
type runInfo struct {
	PID       int       `json:"pid"`
	Listen    string    `json:"listen"`
	StartedAt time.Time `json:"started_at"`
	Version   string    `json:"version"`
}

func runFile(l config.Layout) string { return filepath.Join(l.Run(), "service.json") }

func writeRunInfo(l config.Layout, ri runInfo) error {
	b, err := json.Marshal(ri)
	if err != nil {
		return err
	}
	return atomicfile.Write(runFile(l), b, 0o600)
}

func readRunInfo(l config.Layout) (runInfo, error) {
	var ri runInfo
	b, err := os.ReadFile(runFile(l))
	if errors.Is(err, fs.ErrNotExist) {
		return ri, notRunning(l, "")
	}
	if err != nil {
		return ri, err
	}
	if err := json.Unmarshal(b, &ri); err != nil {
		return ri, fmt.Errorf("%s is damaged (%v); restart service-run", runFile(l), err)
	}
	return ri, nil
}

func notRunning(l config.Layout, why string) error {
	msg := fmt.Sprintf("no service-run is running under %s; start it with `courier --root %s service-run`", l.Root, l.Root)
	if why != "" {
		msg += " (" + why + ")"
	}
	return withCode(ExitUnavailable, errors.New(msg))
}
