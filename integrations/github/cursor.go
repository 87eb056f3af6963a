package github

import (
	"context"
	"net/http"
	"time"

	gh "github.com/google/go-github/v92/github"

	"courier/integrations/forge"
)

// The incremental listing of one model in one repo.
//
// Objects are listed by update time, oldest first, and the token is a
// forge.Cursor: the last object passed, by updated_at then id. An object
// is sent when it is After the cursor the export started from, so objects
// updated in the same second as the cursor are neither lost (a higher id
// is After) nor repeated (the ones already sent are not).
//
// Three things keep that true on a live server:
//
//   - The cursor never passes an object updated less than `settle` before
//     the server's clock (its Date header): such an object is sent, and
//     sent again by the next export, because another object may still get
//     the same updated_at second with a lower id.
//   - Within an export, objects seen are remembered by id and update time,
//     so a re-listing (the keyset restart below, a second round) sends only
//     what is new.
//   - Listings that take `since` (issues, comments) restart from page 1 at
//     the cursor's second minus one instead of paging by offset, so an
//     object updated meanwhile (it moves to the end) cannot shift another
//     past the page boundary. Pull requests have no `since`: they page by
//     offset, and when an object was updated during the pass (it may have
//     shifted one not yet read onto a page already read), the listing runs
//     again, sending only what the first pass did not (at most maxRounds).
//
// Checkpoints after each page make a crash resume mid-repo: when the page
// ends inside a second, the checkpoint is that second's start (ID 0), so a
// resumed export re-sends that second's objects rather than skip one that
// the listing orders after the page's last.

// item is one listed object as the pager sees it.
type item[T any] struct {
	v       T
	id      int64
	updated time.Time
}

// listPage is one page of a listing.
type listPage[T any] struct {
	items []item[T]
	next  int       // the next page, 0 at the end
	last  int       // the last page, 0 when not said (this is the last)
	date  time.Time // the server's clock; zero when it did not say
}

// pager runs one model's incremental listing.
type pager[T any] struct {
	// list returns page number page of the objects updated at or after
	// since (zero: all), oldest first.
	list func(ctx context.Context, since time.Time, page int) (listPage[T], error)
	// keyset: list honours since. Otherwise it pages by offset only.
	keyset bool
	// emit sends the objects of one page that are new to this export.
	emit func(ctx context.Context, objs []T) error
	// checkpoint commits the cursor after what emit sent is durable.
	checkpoint func(ctx context.Context, c forge.Cursor) error
	// progress is told of pages done (of last, when known).
	progress func(page, last int)
}

// run lists everything after start and returns the cursor to commit.
func (p *pager[T]) run(ctx context.Context, start forge.Cursor) (forge.Cursor, error) {
	end, saved := start, start
	seen := map[int64]time.Time{}
	rounds := maxRounds
	if p.keyset {
		rounds = 1
	}
	for round := 0; round < rounds; round++ {
		var since time.Time
		pageNo := 1
		if !start.Updated.IsZero() {
			if p.keyset {
				// `since` is documented as "after"; overlap a second so
				// that the cursor's own second comes back either way.
				since = start.Updated.Truncate(time.Second).Add(-time.Second)
			} else {
				n, err := p.firstPage(ctx, start)
				if err != nil {
					return end, err
				}
				pageNo = n
			}
		}
		var passStart time.Time
		moved := false
		for pageNo > 0 {
			pg, err := p.list(ctx, since, pageNo)
			if err != nil {
				return end, err
			}
			now := pg.date
			if now.IsZero() {
				now = time.Now()
			}
			if passStart.IsZero() {
				passStart = now.Add(-time.Second) // Date has second resolution
			}
			horizon := now.Add(-settle)
			var fresh []item[T]
			for _, it := range pg.items {
				if !it.updated.Before(passStart) {
					moved = true
				}
				if prev, ok := seen[it.id]; ok && !it.updated.After(prev) {
					continue
				}
				if !start.After(it.updated, it.id) {
					continue
				}
				seen[it.id] = it.updated
				fresh = append(fresh, it)
			}
			if len(fresh) > 0 {
				objs := make([]T, len(fresh))
				for i, it := range fresh {
					objs[i] = it.v
				}
				if err := p.emit(ctx, objs); err != nil {
					return end, err
				}
				for _, it := range fresh {
					if it.updated.Before(horizon) {
						end.Advance(it.updated, it.id)
					}
				}
			}
			ck := end
			if n := len(pg.items); pg.next != 0 && n > 0 && pg.items[n-1].updated.Equal(end.Updated) {
				ck = forge.Cursor{Updated: end.Updated} // more of that second may follow
			}
			if !ck.Updated.IsZero() && saved.After(ck.Updated, ck.ID) {
				if err := p.checkpoint(ctx, ck); err != nil {
					return end, err
				}
				saved = ck
			}
			if p.progress != nil {
				p.progress(pageNo, max(pg.last, pageNo))
			}
			if pg.next == 0 || len(pg.items) == 0 {
				break
			}
			if p.keyset {
				if ns := end.Updated.Truncate(time.Second).Add(-time.Second); !end.Updated.IsZero() && ns.After(since) {
					since, pageNo = ns, 1
					continue
				}
			}
			pageNo = pg.next
		}
		if !moved {
			break
		}
	}
	return end, nil
}

// searchFrom is the page count from which a binary search costs fewer
// requests than reading every page.
const searchFrom = 8

// firstPage finds, for an offset listing, the first page that may hold an
// object After start: pages wholly older than start's second are skipped
// with a binary search instead of read (a big repo's incremental export
// reads a few pages, not all of them).
func (p *pager[T]) firstPage(ctx context.Context, start forge.Cursor) (int, error) {
	older := func(pg listPage[T]) bool {
		n := len(pg.items)
		return n > 0 && pg.items[n-1].updated.Before(start.Updated)
	}
	pg, err := p.list(ctx, time.Time{}, 1)
	if err != nil {
		return 0, err
	}
	if !older(pg) || pg.last < searchFrom {
		return 1, nil
	}
	lo, hi := 2, pg.last
	for lo < hi {
		mid := (lo + hi) / 2
		m, err := p.list(ctx, time.Time{}, mid)
		if err != nil {
			return 0, err
		}
		if older(m) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	// One page early: objects that move to the end meanwhile shift the
	// others towards the start.
	return max(lo-1, 1), nil
}

// pageOf wraps a go-github answer.
func pageOf[T any](items []item[T], resp *gh.Response) listPage[T] {
	pg := listPage[T]{items: items}
	if resp != nil {
		pg.next, pg.last = resp.NextPage, resp.LastPage
		if resp.Response != nil {
			if t, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
				pg.date = t
			}
		}
	}
	return pg
}
