package actors_test

import (
	"context"
	"testing"
	"time"

	"courier/actors"
	"courier/backend"
	"courier/internal/exporttest"
)

func entry(id, state string, received, finished time.Time) actors.JournalEntry {
	return actors.JournalEntry{Command: backend.Command{ID: id, Type: "export"}, State: state, ReceivedAt: received, FinishedAt: finished}
}

// TestJournalUnfinishedResumesAndPrunes: Unfinished returns the accepted
// commands oldest first and forgets finished ones older than a week and
// entries that do not decode; younger finished ones stay (they dedupe
// redeliveries).
func TestJournalUnfinishedResumesAndPrunes(t *testing.T) {
	r := exporttest.New(t, exporttest.Options{QueueOnly: true})
	j := actors.Journal{Q: r.Q}
	ctx := context.Background()
	now := time.Now().UTC()
	for _, e := range []actors.JournalEntry{
		entry("old", "done", now.Add(-9*24*time.Hour), now.Add(-8*24*time.Hour)),
		entry("young", "done", now.Add(-2*24*time.Hour), now.Add(-6*24*time.Hour)),
		entry("later", "accepted", now.Add(-time.Minute), time.Time{}),
		entry("earlier", "accepted", now.Add(-time.Hour), time.Time{}),
	} {
		if err := j.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Q.Put(ctx, "journal", "garbled", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	got, err := j.Unfinished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Command.ID != "earlier" || got[1].Command.ID != "later" {
		t.Fatalf("unfinished %+v, want earlier then later", got)
	}
	for id, want := range map[string]bool{"old": false, "garbled": false, "young": true, "earlier": true, "later": true} {
		_, ok, err := j.Get(id)
		if id == "garbled" && err != nil {
			t.Fatalf("garbled entry still there: %v", err)
		}
		if err == nil && ok != want {
			t.Errorf("%s kept: %v, want %v", id, ok, want)
		}
	}
}

// TestJournalUnfinishedSurvivesAFailedPrune: forgetting old entries is
// housekeeping; when it fails the unfinished commands are still returned
// (before 6085d1f one failed delete kept every command from resuming).
func TestJournalUnfinishedSurvivesAFailedPrune(t *testing.T) {
	r := exporttest.New(t, exporttest.Options{QueueOnly: true})
	j := actors.Journal{Q: r.Q}
	ctx := context.Background()
	now := time.Now().UTC()
	for _, e := range []actors.JournalEntry{
		entry("old", "done", now.Add(-9*24*time.Hour), now.Add(-8*24*time.Hour)),
		entry("todo", "accepted", now, time.Time{}),
	} {
		if err := j.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// With its context ended the delete fails (it answers before the
	// queue's commit can).
	done, cancel := context.WithCancel(ctx)
	cancel()
	got, err := j.Unfinished(done)
	if err == nil && len(got) == 1 && got[0].Command.ID == "todo" {
		return
	}
	t.Fatalf("unfinished %+v, %v; want todo", got, err)
}
