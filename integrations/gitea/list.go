package gitea

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strconv"
	"time"

	sdk "code.gitea.io/sdk/gitea"

	"courier/integrations/forge"
)

// maxRelists bounds how often a listing starts over because the list
// shrank under it.
const maxRelists = 3

// fetchFunc gets one page (1-based) of a list.
type fetchFunc[T any] func(page int) ([]T, *sdk.Response, error)

// listAll reads every page of a list and returns its items, each once.
//
// Gitea pages by offset. An item added while we page (or one that starts
// to match "since" because it was just updated) pushes the others back,
// so one may be seen twice: duplicates are dropped by key. An item removed
// pulls the others forward, so one could be skipped: when the total count
// shrinks the listing starts over (a few times at most).
//
// The end is the Link header's next page when the server sends one,
// otherwise X-Total-Count, otherwise a short page. stop, when given, ends
// the listing early after a page (a list sorted newest first has reached
// objects older than the cursor).
func listAll[T any](ctx context.Context, g *Gitea, what string, fetch fetchFunc[T], key func(T) int64, stop func([]T) bool) ([]T, error) {
	for attempt := 0; ; attempt++ {
		out, shrank, err := listOnce(ctx, g, what, fetch, key, stop)
		if err != nil || !shrank || attempt == maxRelists {
			return out, err
		}
		g.log.Debug().Str("list", what).Msg("list shrank while paging; listing again")
	}
}

func listOnce[T any](ctx context.Context, g *Gitea, what string, fetch fetchFunc[T], key func(T) int64, stop func([]T) bool) (out []T, shrank bool, err error) {
	seen := map[int64]bool{}
	first, fetched := -1, 0
	for page := 1; ; page++ {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		items, resp, err := fetch(page)
		if err := g.check(what, resp, err); err != nil {
			return nil, false, err
		}
		total, hasTotal := totalCount(resp)
		if hasTotal {
			if first < 0 {
				first = total
			} else if total < first {
				shrank = true
			}
		}
		fetched += len(items)
		for _, it := range items {
			if k := key(it); !seen[k] {
				seen[k] = true
				out = append(out, it)
			}
		}
		var more bool
		switch {
		case len(items) == 0:
		case stop != nil && stop(items):
		case resp.NextPage > 0:
			more = true
		case hasTotal:
			more = fetched < total
		default:
			more = len(items) >= pageSize
		}
		if !more {
			return out, shrank, nil
		}
	}
}

func totalCount(resp *sdk.Response) (int, bool) {
	if resp == nil || resp.Response == nil {
		return 0, false
	}
	n, err := strconv.Atoi(resp.Header.Get("X-Total-Count"))
	return n, err == nil
}

// settle is how far behind the server's clock an export stops. Gitea keeps
// times in whole seconds, so an object updated later in a second the
// cursor has reached would sort before the cursor's id and be skipped for
// good; and a write whose time was taken just before a listing may commit
// just after it. Objects updated within settle of the listing's start wait
// for the next export instead (see README.md, "Incremental exports").
const settle = time.Second

// horizon is the time before which objects are exported: the server's
// clock (its Date header on a response received before the listings
// start) less settle, in whole seconds. Without a Date header the local
// clock stands in, a little further back.
func horizon(resp *sdk.Response, now time.Time) time.Time {
	if resp != nil && resp.Response != nil {
		if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
			return d.UTC().Truncate(time.Second).Add(-settle)
		}
	}
	return now.UTC().Truncate(time.Second).Add(-settle - 2*time.Second)
}

// stamped is an object with an update time and an id.
type stamped struct {
	updated time.Time
	id      int64
}

// pick keeps the items past cur and before hz, sorted by update time then
// id: the order in which the cursor advances.
func pick[T any](items []T, stamp func(T) stamped, cur forge.Cursor, hz time.Time) []T {
	var out []T
	for _, it := range items {
		s := stamp(it)
		if s.updated.Before(hz) && cur.After(s.updated, s.id) {
			out = append(out, it)
		}
	}
	slices.SortFunc(out, func(a, b T) int {
		sa, sb := stamp(a), stamp(b)
		if c := sa.updated.Compare(sb.updated); c != 0 {
			return c
		}
		return cmp.Compare(sa.id, sb.id)
	})
	return out
}

// since is the "since" filter for cur: Gitea compares whole seconds with
// >=, so objects in the cursor's own second come back and pick drops those
// already emitted.
func since(cur forge.Cursor) time.Time {
	if cur.Updated.IsZero() {
		return time.Time{}
	}
	return cur.Updated.Truncate(time.Second)
}

func timeOf(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
