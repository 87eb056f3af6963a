package jira

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"courier/integrations"
	"courier/sessions"
)

// How the incremental issue export works
//
// JQL filters on `updated` only at minute resolution, and reads a date
// literal in the time zone of the user running the search (the timeZone of
// /rest/api/2/myself). So the lower bound of a search is the latest update
// already exported (the watermark, "high"), converted to the user's zone,
// truncated to the minute, minus an overlap:
//
//	project = 10000 AND updated >= "2024/01/02 04:59" ORDER BY updated ASC, key ASC
//
// Every issue updated since the bound comes back, including some already
// exported. The token keeps, besides the watermark, the issues exported
// with an update at or after the bound (id → updated, in milliseconds):
// an issue is sent again only when its updated time differs from the one
// already sent. That dedupes by id and updated time exactly: two issues
// updated in the same millisecond, or one that Jira's search index shows
// late (Cloud's search is eventually consistent), are neither lost nor
// repeated, where a plain (updated, id) cursor loses the late one.
//
// Paging while issues change. Results are ordered by updated ascending,
// and an issue that is updated moves to the end of the results; one that
// moves (or is deleted) from a page already read shifts every later one
// back a place, so plain startAt paging skips one issue per shift. Two
// defences:
//   - keyset paging: after each page the bound is recomputed from the new
//     watermark, and a moved bound starts a new search. Only the issues
//     between the bound and the watermark (the overlap, a few minutes of
//     updates) precede the position the export resumes from.
//   - on Data Center (startAt paging), the next page starts one position
//     early, on the last issue already read. If that issue is not the
//     first of the page, the results shifted: the page is dropped unread
//     and the search restarts from the bound (everything the shift could
//     have hidden sorts after the watermark, so nothing is sent twice and
//     nothing skipped). Cloud's enhanced search pages with an opaque
//     nextPageToken instead; the bound moves with every page that advances
//     the watermark, so the token is used only while a page holds nothing
//     but issues of the overlap window (a bulk change of more issues than a
//     page within the same minutes).
//
// The token is checkpointed after every page, after that page's issues and
// comments are durable.

// overlap is how far before the watermark's minute a search starts.
var overlap = time.Minute

// unknownZoneMargin widens a bound when the user's zone is unknown: the
// literal is formatted in UTC and Jira may read it in any zone from
// UTC-12 to UTC+14.
const unknownZoneMargin = 14 * time.Hour

// maxRestarts bounds searches restarted in a row because results shifted
// under the pager; past it the project fails for this export and keeps
// its last checkpoint.
const maxRestarts = 20

// jqlLayout is JQL's date literal at minute resolution.
const jqlLayout = "2006/01/02 15:04"

// jqlBound returns the lower bound for a watermark: the JQL literal and
// the earliest instant Jira may read it as (issues before that instant are
// not returned, so the token forgets them).
func jqlBound(high time.Time, zone *time.Location) (string, time.Time) {
	if zone == nil {
		t := high.UTC().Truncate(time.Minute).Add(-overlap - unknownZoneMargin)
		return t.Format(jqlLayout), t.Add(-unknownZoneMargin)
	}
	l := high.In(zone)
	// The minute of the wall clock: subtracting the wall clock's seconds
	// is exact whatever the zone's offset, where Truncate works on UTC.
	t := l.Add(-time.Duration(l.Second())*time.Second - time.Duration(l.Nanosecond())).Add(-overlap)
	// A literal in the hour repeated when clocks go back names two
	// instants and Jira may take the later one: step back before it.
	for range 8 {
		lit := t.In(zone).Format(jqlLayout)
		var shift time.Duration
		for _, d := range []time.Duration{30 * time.Minute, time.Hour, 2 * time.Hour} {
			if t.Add(d).In(zone).Format(jqlLayout) == lit || t.Add(-d).In(zone).Format(jqlLayout) == lit {
				shift = d
			}
		}
		if shift == 0 {
			return lit, t
		}
		t = t.Add(-shift)
	}
	return t.In(zone).Format(jqlLayout), t
}

// issueToken is the issue session's token.
type issueToken struct {
	V int `json:"v"`
	// High is the latest updated time of the issues sent.
	High time.Time `json:"high"`
	// Seen holds the issues sent whose updated time is at or after the
	// next search's bound: id → updated (Unix milliseconds).
	Seen map[string]int64 `json:"seen"`
}

// commentToken is the comment session's token, committed when a project
// ends: every comment updated before the bound of High has been sent.
type commentToken struct {
	V    int       `json:"v"`
	High time.Time `json:"high"`
}

func decodeIssueToken(s string) (issueToken, error) {
	t := issueToken{V: 1, Seen: map[string]int64{}}
	if s == "" {
		return t, nil
	}
	if err := json.Unmarshal([]byte(s), &t); err != nil {
		return issueToken{V: 1, Seen: map[string]int64{}}, err
	}
	if t.V != 1 {
		return issueToken{V: 1, Seen: map[string]int64{}}, fmt.Errorf("token version %d", t.V)
	}
	if t.Seen == nil {
		t.Seen = map[string]int64{}
	}
	return t, nil
}

func (t *issueToken) encode() string {
	b, _ := json.Marshal(t)
	return string(b)
}

// prune forgets issues sent before the instant a bound reads as.
func (t *issueToken) prune(at time.Time) {
	ms := at.UnixMilli()
	for id, u := range t.Seen {
		if u < ms {
			delete(t.Seen, id)
		}
	}
}

// projectExport exports one project's issues and comments.
type projectExport struct {
	j          *Jira
	s          *site
	p          apiProject
	fieldNames map[string]string

	issues, comments *sessions.Session
	tok              issueToken
	// commentFloor: comments updated before it were sent by an earlier
	// export (zero: send every comment).
	commentFloor time.Time

	read, issuesSent, commentsSent int64
}

// runItem is an issue of the Data Center pager's current run: the results
// read contiguously from the start of the current search.
type runItem struct {
	id      string
	updated time.Time
}

func (x *projectExport) jql(bound string) string {
	q := "project = " + x.p.ID
	if bound != "" {
		q += ` AND updated >= "` + bound + `"`
	}
	// "key" orders issues of one project by number; the order only needs to
	// be total and stable, the token does the deduping.
	return q + " ORDER BY updated ASC, key ASC"
}

func (x *projectExport) run(ctx context.Context, ps *sessions.Session) error {
	log := x.j.opts.Logger.With().Str("project", x.p.Key).Logger()
	var itok, ctok string
	var err error
	if x.issues, itok, err = ps.Open(ModelIssue); err != nil {
		return fatal(err)
	}
	if x.comments, ctok, err = ps.Open(ModelIssueComment); err != nil {
		return fatal(err)
	}
	if x.tok, err = decodeIssueToken(itok); err != nil {
		// A token this code cannot read: export the project again (the
		// backend dedupes by record id) rather than fail forever.
		log.Warn().Err(err).Msg("unreadable issue token; exporting the project from the start")
	}
	if ctok != "" {
		var ct commentToken
		if json.Unmarshal([]byte(ctok), &ct) == nil && ct.V == 1 && !ct.High.IsZero() {
			// The same window as the issues': an issue the search shows
			// late (updated after this instant) has its comments sent.
			_, x.commentFloor = jqlBound(ct.High, x.s.zone)
		}
	}

	var (
		bound, next string
		boundAt     time.Time
		run         []runItem
		restarts    int
		// The bound moves with the watermark only when the zone is known:
		// otherwise Jira's reading of it is uncertain by hours, and the
		// pager's positions with it.
		movable = x.s.zone != nil
	)
	if !x.tok.High.IsZero() {
		bound, boundAt = jqlBound(x.tok.High, x.s.zone)
	}
	for {
		jql := x.jql(bound)
		var pg searchPage
		if x.s.cloud {
			pg, err = x.j.api.searchCloud(ctx, jql, next, pageSize)
		} else {
			// Resume on the last issue read: one more result than a page,
			// so that a page always holds pageSize new positions.
			start, limit := 0, pageSize
			if len(run) > 0 {
				start, limit = len(run)-1, pageSize+1
			}
			pg, err = x.j.api.searchDC(ctx, jql, start, limit)
			if err == nil && len(run) > 0 {
				if last := run[len(run)-1]; len(pg.Issues) == 0 || !sameIssue(pg.Issues[0], last) {
					// Results shifted under the pager: drop this page and
					// read again from the bound.
					if restarts++; restarts > maxRestarts {
						return fmt.Errorf("issues kept changing while paging (%d restarts); the next export resumes from the last checkpoint", maxRestarts)
					}
					log.Debug().Str("jql", jql).Int("start_at", start).Msg("search results shifted; restarting from the bound")
					run = nil
					continue
				}
				pg.Issues = pg.Issues[1:]
			}
		}
		if err != nil {
			return err
		}
		if len(pg.Issues) == 0 && !pg.Last && (!x.s.cloud || pg.Next == next) {
			// Nothing to move on with: stop rather than ask forever.
			return errors.New("Jira answered an empty page before the end of the results")
		}
		page := make([]decodedIssue, 0, len(pg.Issues))
		for _, raw := range pg.Issues {
			d, err := decodeIssue(raw)
			if err != nil {
				return err
			}
			page = append(page, d)
		}
		high := x.tok.High
		if err := x.emit(ctx, page); err != nil {
			return err
		}
		if x.tok.High.After(high) {
			restarts = 0 // progress: the restarts in a row start again
		}
		x.read += int64(len(page))
		if pg.Remaining >= 0 {
			x.issues.Progress(x.read, x.read+int64(pg.Remaining))
		} else {
			x.issues.Progress(x.read, 0) // Cloud's search gives no total
		}
		if !x.s.cloud {
			for _, d := range page {
				run = append(run, runItem{id: d.raw.ID, updated: d.updated})
			}
		}
		if !x.tok.High.IsZero() && (movable || bound == "") {
			nb, nat := jqlBound(x.tok.High, x.s.zone)
			if nb != bound {
				bound, boundAt, next = nb, nat, ""
				// The run's issues before the new bound are not in the
				// new results: the last one read is at len(run)-1.
				i := sort.Search(len(run), func(i int) bool { return !run[i].updated.Before(boundAt) })
				run = append([]runItem(nil), run[i:]...)
			} else {
				next = pg.Next
			}
		} else {
			next = pg.Next
		}
		if !boundAt.IsZero() {
			x.tok.prune(boundAt)
		}
		if err := x.checkpoint(ctx); err != nil {
			return err
		}
		if pg.Last {
			break
		}
	}
	if x.tok.High.IsZero() {
		if err := x.comments.Done(ctx, ""); err != nil {
			return fatal(err)
		}
		return fatal(x.issues.Done(ctx, ""))
	}
	_, at := jqlBound(x.tok.High, x.s.zone)
	x.tok.prune(at)
	ct, _ := json.Marshal(commentToken{V: 1, High: x.tok.High})
	if err := x.comments.Done(ctx, string(ct)); err != nil {
		return fatal(err)
	}
	return fatal(x.issues.Done(ctx, x.tok.encode()))
}

// sameIssue reports whether a search result is the run's issue as read.
func sameIssue(raw apiIssue, it runItem) bool {
	if raw.ID != it.id {
		return false
	}
	d, err := decodeIssue(raw)
	return err == nil && d.updated.Equal(it.updated)
}

func (x *projectExport) checkpoint(ctx context.Context) error {
	if x.tok.High.IsZero() {
		return nil
	}
	return fatal(x.issues.Checkpoint(ctx, x.tok.encode()))
}

// emit sends the issues of a page not sent before (with their whole
// changelog) and their comments not sent before, then records them in the
// token.
func (x *projectExport) emit(ctx context.Context, page []decodedIssue) error {
	var (
		fresh []*decodedIssue
		prev  = map[string]int64{}
	)
	for i := range page {
		d := &page[i]
		ms := d.updated.UnixMilli()
		if p, ok := x.tok.Seen[d.raw.ID]; ok {
			if ms <= p {
				continue // sent already (or an older copy from a lagging index)
			}
			prev[d.raw.ID] = p
		}
		fresh = append(fresh, d)
	}
	if len(fresh) == 0 {
		return nil
	}
	hists := make([][]apiHistory, len(fresh))
	comments := make([][]apiComment, len(fresh))
	grp, _ := integrations.NewGroup(ctx, parallelIssues)
	for i, d := range fresh {
		grp.Go(func(ctx context.Context) error {
			var err error
			if hists[i], err = x.changelog(ctx, d); err != nil {
				return fmt.Errorf("issue %s: changelog: %w", d.raw.Key, err)
			}
			if comments[i], err = x.issueComments(ctx, d); err != nil {
				return fmt.Errorf("issue %s: comments: %w", d.raw.Key, err)
			}
			return nil
		})
	}
	if err := grp.Wait(); err != nil {
		return err
	}
	issueRecs := make([]sessions.Record, 0, len(fresh))
	var commentRecs []sessions.Record
	for i, d := range fresh {
		issueRecs = append(issueRecs, sessions.Record{ID: x.j.recordID(ModelIssue, d.raw.ID), Data: x.j.issue(d, hists[i], x.fieldNames)})
		p, hadPrev := prev[d.raw.ID]
		for k := range comments[i] {
			c := &comments[i][k]
			u := c.Updated.Time
			if u.IsZero() {
				u = c.Created.Time
			}
			// Sent by an earlier export, or with this issue's earlier
			// version: a comment added or edited updates its issue.
			if u.Before(x.commentFloor) || hadPrev && u.UnixMilli() <= p {
				continue
			}
			commentRecs = append(commentRecs, sessions.Record{ID: x.j.recordID(ModelIssueComment, c.ID), Data: x.j.comment(c, d)})
		}
	}
	if err := x.issues.Send(ctx, issueRecs...); err != nil {
		return fatal(err)
	}
	if len(commentRecs) > 0 {
		if err := x.comments.Send(ctx, commentRecs...); err != nil {
			return fatal(err)
		}
	}
	x.issuesSent += int64(len(issueRecs))
	x.commentsSent += int64(len(commentRecs))
	x.comments.Progress(x.commentsSent, 0)
	for _, d := range fresh {
		x.tok.Seen[d.raw.ID] = d.updated.UnixMilli()
		if d.updated.After(x.tok.High) {
			x.tok.High = d.updated
		}
	}
	return nil
}

// changelog returns the issue's whole changelog: the search's, unless the
// search gave only part of it.
func (x *projectExport) changelog(ctx context.Context, d *decodedIssue) ([]apiHistory, error) {
	cl := d.raw.Changelog
	if cl != nil && len(cl.Histories) >= cl.Total {
		return cl.Histories, nil
	}
	hs, err := x.j.api.changelog(ctx, d.raw.ID, x.s.cloud)
	if err != nil {
		return nil, err
	}
	if cl != nil && len(hs) < cl.Total {
		x.j.opts.Logger.Warn().Str("issue", d.raw.Key).Int("histories", len(hs)).Int("total", cl.Total).
			Msg("Jira gave only part of the changelog")
	}
	return hs, nil
}

// issueComments returns the issue's comments: those the search embedded
// when they are all there, else every page of /issue/{id}/comment.
func (x *projectExport) issueComments(ctx context.Context, d *decodedIssue) ([]apiComment, error) {
	if c := d.f.Comment; c != nil && len(c.Comments) >= c.Total {
		return c.Comments, nil
	}
	return x.j.api.comments(ctx, d.raw.ID)
}
