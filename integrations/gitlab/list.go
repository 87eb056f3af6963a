package gitlab

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go/v2"

	"courier/integrations/forge"
)

// maxPages bounds one listing: a server whose Link headers loop would
// otherwise hold the export forever. 100 000 pages of 100 is far beyond
// any real project.
const maxPages = 100_000

// fetchFunc gets one page; next carries the request options that select
// it (none for the first page).
type fetchFunc[T any] func(next ...gl.RequestOptionFunc) ([]T, *gl.Response, error)

// listAll reads every page of a list and returns its items, each once
// (by key).
//
// The next page is the Link header's rel="next" when there is one (keyset
// pagination, and offset pagination on every GitLab since 9.0), otherwise
// X-Next-Page. GitLab leaves out X-Total and X-Total-Pages on large lists,
// so the end is never computed from them.
//
// Offset pages shift when the list changes while it is read: listings of
// objects by update time are read newest first, so an object updated
// meanwhile moves to the front and the others are seen twice (dropped
// here), never skipped; what moved to the front is past the export's
// horizon and comes with the next export.
func listAll[T any](ctx context.Context, g *GitLab, what string, fetch fetchFunc[T], key func(T) int64) ([]T, error) {
	var out []T
	seen := map[int64]bool{}
	var next []gl.RequestOptionFunc
	for page := 0; page < maxPages; page++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		items, resp, err := fetch(append(next, gl.WithContext(ctx))...)
		if err := g.check(what, resp, err); err != nil {
			return nil, err
		}
		for _, it := range items {
			if k := key(it); !seen[k] {
				seen[k] = true
				out = append(out, it)
			}
		}
		switch {
		case len(items) == 0:
			return out, nil
		case resp.NextLink != "":
			next = []gl.RequestOptionFunc{gl.WithKeysetPaginationParameters(resp.NextLink)}
		case resp.NextPage > 0:
			next = []gl.RequestOptionFunc{gl.WithOffsetPaginationParameters(resp.NextPage)}
		default:
			return out, nil
		}
	}
	g.log.Warn().Str("list", what).Int("pages", maxPages).Msg("list still had a next page; stopped")
	return out, nil
}

// settle is how far behind the server's clock an export stops. A write
// whose time was taken just before a listing may commit just after it,
// and the Date header that gives the server's clock is in whole seconds:
// objects updated within settle of the listing's start wait for the next
// export instead (README.md, "Incremental exports"). The same rule as the
// gitea integration's.
const settle = time.Second

// horizon is the time before which objects are exported: the server's
// clock (the Date of a response received before the listings start) less
// settle. Without a Date header the local clock stands in, further back.
func horizon(resp *gl.Response, now time.Time) time.Time {
	if resp != nil && resp.Response != nil {
		if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
			return d.UTC().Truncate(time.Second).Add(-settle)
		}
	}
	return now.UTC().Truncate(time.Second).Add(-settle - 2*time.Second)
}

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

// since is the updated_after filter for cur. GitLab compares with >=,
// and the SDK sends the time in whole seconds (RFC 3339): objects of the
// cursor's own second come back and pick drops those already emitted.
func since(cur forge.Cursor) *time.Time {
	if cur.Updated.IsZero() {
		return nil
	}
	t := cur.Updated.Truncate(time.Second)
	return &t
}

func timeOf(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil || t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
