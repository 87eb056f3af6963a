package github

import (
	"context"
	"errors"
	"slices"
	"sort"
	"testing"
	"time"

	"courier/integrations/forge"
)

// memList is a listing in memory, ordered by update time, ties newest
// id first (as the fake server does: a client must not count on ties).
type memList struct {
	objs    map[int64]time.Time
	per     int
	now     time.Time
	calls   int
	onPage  func(page int) // runs after a page is served
	failAt  int            // page whose listing fails (0: none)
	sinceOK bool           // honour since
}

func (m *memList) sorted(since time.Time) []item[int64] {
	var out []item[int64]
	for id, u := range m.objs {
		if m.sinceOK && u.Before(since) {
			continue
		}
		out = append(out, item[int64]{v: id, id: id, updated: u})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].updated.Equal(out[j].updated) {
			return out[i].updated.Before(out[j].updated)
		}
		return out[i].id > out[j].id
	})
	return out
}

func (m *memList) list(_ context.Context, since time.Time, page int) (listPage[int64], error) {
	m.calls++
	if page == m.failAt {
		return listPage[int64]{}, errors.New("listing failed")
	}
	all := m.sorted(since)
	last := max((len(all)+m.per-1)/m.per, 1)
	pg := listPage[int64]{date: m.now}
	for i := (page - 1) * m.per; i < min(page*m.per, len(all)); i++ {
		pg.items = append(pg.items, all[i])
	}
	if page < last {
		pg.next, pg.last = page+1, last
	}
	if m.onPage != nil {
		m.onPage(page)
	}
	return pg, nil
}

type runOut struct {
	emitted []int64
	ckpts   []forge.Cursor
	end     forge.Cursor
	err     error
}

func runPager(m *memList, keyset bool, start forge.Cursor) runOut {
	var out runOut
	p := pager[int64]{
		list:       m.list,
		keyset:     keyset,
		emit:       func(_ context.Context, ids []int64) error { out.emitted = append(out.emitted, ids...); return nil },
		checkpoint: func(_ context.Context, c forge.Cursor) error { out.ckpts = append(out.ckpts, c); return nil },
	}
	out.end, out.err = p.run(context.Background(), start)
	return out
}

var t0 = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)

func sec(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

func sortedIDs(ids []int64) []int64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

func TestPagerSameSecondNeitherLostNorRepeated(t *testing.T) {
	for _, keyset := range []bool{false, true} {
		m := &memList{per: 2, now: sec(3600), sinceOK: keyset, objs: map[int64]time.Time{
			1: sec(0), 2: sec(0), 3: sec(1), 4: sec(1), 5: sec(1),
		}}
		first := runPager(m, keyset, forge.Cursor{})
		if first.err != nil || !slices.Equal(sortedIDs(first.emitted), []int64{1, 2, 3, 4, 5}) {
			t.Fatalf("keyset=%v: first run emitted %v (%v)", keyset, first.emitted, first.err)
		}
		if want := (forge.Cursor{Updated: sec(1), ID: 5}); first.end != want {
			t.Fatalf("keyset=%v: end %v, want %v", keyset, first.end, want)
		}
		// New objects in the cursor's second, one updated later.
		m.objs[6] = sec(1)
		m.objs[7] = sec(1)
		m.objs[2] = sec(2)
		second := runPager(m, keyset, first.end)
		if !slices.Equal(sortedIDs(second.emitted), []int64{2, 6, 7}) {
			t.Fatalf("keyset=%v: second run emitted %v, want exactly 2, 6, 7", keyset, second.emitted)
		}
		third := runPager(m, keyset, second.end)
		if len(third.emitted) != 0 {
			t.Fatalf("keyset=%v: nothing changed, yet %v emitted", keyset, third.emitted)
		}
	}
}

// More objects in one second than fit a page: keyset paging moves on by
// page number there, and ends.
func TestPagerKeysetManyInOneSecond(t *testing.T) {
	m := &memList{per: 3, now: sec(3600), sinceOK: true, objs: map[int64]time.Time{}}
	for id := int64(1); id <= 8; id++ {
		m.objs[id] = sec(5)
	}
	m.objs[9] = sec(6)
	out := runPager(m, true, forge.Cursor{})
	if !slices.Equal(sortedIDs(out.emitted), []int64{1, 2, 3, 4, 5, 6, 7, 8, 9}) || len(out.emitted) != 9 {
		t.Fatalf("emitted %v", out.emitted)
	}
	if m.calls > 10 {
		t.Fatalf("%d listings for 9 objects", m.calls)
	}
}

// An object updated while an offset listing pages through moves to the
// end and shifts one not yet read onto a page already read; a second
// round finds it.
func TestPagerOffsetShiftIsCaughtByASecondRound(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	m := &memList{per: 2, now: now, objs: map[int64]time.Time{}}
	for id := int64(1); id <= 6; id++ {
		m.objs[id] = sec(int(id))
	}
	m.onPage = func(page int) {
		if page == 1 && m.objs[1].Before(now) {
			m.objs[1] = now // 1 moves to the end: 3 slides onto page 1
		}
	}
	out := runPager(m, false, forge.Cursor{})
	if !slices.Equal(sortedIDs(out.emitted), []int64{1, 1, 2, 3, 4, 5, 6}) {
		t.Fatalf("emitted %v, want every object (1 twice: it changed)", out.emitted)
	}
	// 1 was updated just now: the cursor stays behind it (settle).
	if want := (forge.Cursor{Updated: sec(6), ID: 6}); out.end != want {
		t.Fatalf("end %v, want %v", out.end, want)
	}
	again := runPager(m, false, out.end)
	if !slices.Equal(again.emitted, []int64{1}) {
		t.Fatalf("next run emitted %v, want 1 (updated within settle of the server's clock)", again.emitted)
	}
}

// A big offset listing starts near the cursor instead of reading every
// page.
func TestPagerOffsetSkipsOldPages(t *testing.T) {
	m := &memList{per: 2, now: sec(3600), objs: map[int64]time.Time{}}
	for id := int64(1); id <= 40; id++ {
		m.objs[id] = sec(int(id))
	}
	start := forge.Cursor{Updated: sec(35), ID: 35}
	out := runPager(m, false, start)
	if !slices.Equal(sortedIDs(out.emitted), []int64{36, 37, 38, 39, 40}) {
		t.Fatalf("emitted %v", out.emitted)
	}
	if m.calls > 10 {
		t.Fatalf("%d listings of 20 pages to find 5 new objects", m.calls)
	}
}

// A run that fails part-way resumes from its last checkpoint: nothing is
// lost, and only the checkpoint's second is sent again.
func TestPagerResumesFromCheckpoint(t *testing.T) {
	for _, keyset := range []bool{false, true} {
		m := &memList{per: 2, now: sec(3600), sinceOK: keyset, objs: map[int64]time.Time{
			1: sec(1), 2: sec(2), 3: sec(3), 4: sec(3), 5: sec(3), 6: sec(4), 7: sec(5),
		}}
		m.failAt = 3
		if keyset {
			m.failAt = 0
			calls := 0
			m.onPage = func(int) { calls++ }
			inner := m.list
			failing := func(ctx context.Context, since time.Time, page int) (listPage[int64], error) {
				if calls == 2 {
					return listPage[int64]{}, errors.New("listing failed")
				}
				return inner(ctx, since, page)
			}
			var out runOut
			p := pager[int64]{list: failing, keyset: true,
				emit:       func(_ context.Context, ids []int64) error { out.emitted = append(out.emitted, ids...); return nil },
				checkpoint: func(_ context.Context, c forge.Cursor) error { out.ckpts = append(out.ckpts, c); return nil }}
			_, out.err = p.run(context.Background(), forge.Cursor{})
			m.onPage = nil
			checkResume(t, m, keyset, out)
			continue
		}
		out := runPager(m, keyset, forge.Cursor{})
		m.failAt = 0
		checkResume(t, m, keyset, out)
	}
}

func checkResume(t *testing.T, m *memList, keyset bool, first runOut) {
	t.Helper()
	if first.err == nil || len(first.ckpts) == 0 {
		t.Fatalf("keyset=%v: want a failure after a checkpoint: %v, %v", keyset, first.err, first.ckpts)
	}
	ck := first.ckpts[len(first.ckpts)-1]
	second := runPager(m, keyset, ck)
	got := map[int64]bool{}
	for _, id := range append(first.emitted, second.emitted...) {
		got[id] = true
	}
	for id := range m.objs {
		if !got[id] {
			t.Fatalf("keyset=%v: object %d lost (first %v, checkpoint %v, second %v)", keyset, id, first.emitted, ck, second.emitted)
		}
	}
	// Re-sent: only objects of the checkpoint's second or later.
	for _, id := range second.emitted {
		if slices.Contains(first.emitted, id) && m.objs[id].Before(ck.Updated) {
			t.Fatalf("keyset=%v: %d re-sent though before the checkpoint %v", keyset, id, ck)
		}
	}
}

// Checkpoints never go backwards and never pass what was not sent.
func TestPagerCheckpointsMoveForward(t *testing.T) {
	m := &memList{per: 2, now: sec(3600), objs: map[int64]time.Time{1: sec(1), 2: sec(2), 3: sec(2), 4: sec(2), 5: sec(3)}}
	out := runPager(m, false, forge.Cursor{})
	for i := 1; i < len(out.ckpts); i++ {
		a, b := out.ckpts[i-1], out.ckpts[i]
		if !a.After(b.Updated, b.ID) {
			t.Fatalf("checkpoints %v", out.ckpts)
		}
	}
	// Page 1 ends inside second 2 (ties come 4, 3, 2): its checkpoint is
	// that second's start.
	if out.ckpts[0] != (forge.Cursor{Updated: sec(2)}) {
		t.Fatalf("first checkpoint %v", out.ckpts[0])
	}
}
