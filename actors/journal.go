package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"courier/backend"
	"courier/queue"
)

const journalNS = "journal"

// Journal states.
const (
	journalAccepted = "accepted" // journaled (and then acknowledged); not finished
	journalDone     = "done"     // its result is durable in the queue
)

// JournalEntry is one backend command as the agent has it.
type JournalEntry struct {
	Command    backend.Command `json:"command"`
	State      string          `json:"state"`
	ReceivedAt time.Time       `json:"received_at"`
	StartedAt  time.Time       `json:"started_at,omitzero"`
	FinishedAt time.Time       `json:"finished_at,omitzero"`
	Status     string          `json:"status,omitempty"`
}

// journalKeep is how long finished commands are remembered, so that a
// command the backend delivers again is recognised and not run twice.
const journalKeep = 7 * 24 * time.Hour

// Journal keeps the commands the agent accepted, in the queue's store
// (written by the queue actor like everything else).
type Journal struct{ Q *queue.Queue }

// Get returns the entry of id.
func (j Journal) Get(id string) (JournalEntry, bool, error) {
	v, err := j.Q.Get(journalNS, id)
	if errors.Is(err, queue.ErrNotFound) {
		return JournalEntry{}, false, nil
	}
	if err != nil {
		return JournalEntry{}, false, err
	}
	var e JournalEntry
	if err := json.Unmarshal(v, &e); err != nil {
		return JournalEntry{}, false, fmt.Errorf("journal entry %s: %w", id, err)
	}
	return e, true, nil
}

// Put writes e durably.
func (j Journal) Put(ctx context.Context, e JournalEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return j.Q.Put(ctx, journalNS, e.Command.ID, b)
}

// Finish stores a command's encoded result under backend.ResultsKey and
// e (its "done" entry) in one batch: a crash keeps both or neither.
func (j Journal) Finish(ctx context.Context, e JournalEntry, result []byte) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return j.Q.EnqueueWith(ctx, backend.ResultsKey, [][]byte{result}, queue.Wait, queue.KV{NS: journalNS, Name: e.Command.ID, Value: b})
}

// Unfinished returns accepted commands without a result, oldest first, and
// forgets finished ones older than a week.
func (j Journal) Unfinished(ctx context.Context) ([]JournalEntry, error) {
	var out []JournalEntry
	var old []string
	err := j.Q.Scan(journalNS, func(name string, v []byte) error {
		var e JournalEntry
		if err := json.Unmarshal(v, &e); err != nil {
			old = append(old, name) // unreadable: nothing to resume from it
			return nil
		}
		switch {
		case e.State != journalDone:
			out = append(out, e)
		case time.Since(e.FinishedAt) > journalKeep:
			old = append(old, name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Forgetting old entries is housekeeping: a failure must not keep the
	// unfinished ones from being resumed.
	for _, id := range old {
		if err := j.Q.Delete(ctx, journalNS, id); err != nil {
			break
		}
	}
	slices.SortFunc(out, func(a, b JournalEntry) int { return a.ReceivedAt.Compare(b.ReceivedAt) })
	return out, nil
}
