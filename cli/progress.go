package cli

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"courier/actors"
	"courier/sessions"
)

// progressUI shows a running export: bars on a terminal (mpb), a log line
// every few seconds otherwise.
type progressUI struct {
	e       *env
	job     *actors.Job
	done    chan struct{}
	stopped chan struct{}
	once    sync.Once

	mu      sync.Mutex
	pending int64 // records still to be written by the sink, after the export
}

const progressLogEvery = 5 * time.Second

func newProgressUI(e *env, job *actors.Job) *progressUI {
	u := &progressUI{e: e, job: job, done: make(chan struct{}), stopped: make(chan struct{})}
	if sw := e.logs; sw != nil && isatty.IsTerminal(sw.Fd()) {
		go u.bars()
	} else {
		go u.lines()
	}
	return u
}

func (u *progressUI) draining(pending int64) {
	u.mu.Lock()
	u.pending = pending
	u.mu.Unlock()
}

func (u *progressUI) stop() {
	u.once.Do(func() { close(u.done) })
	<-u.stopped
}

func (u *progressUI) lines() {
	defer close(u.stopped)
	t := time.NewTicker(progressLogEvery)
	defer t.Stop()
	for {
		select {
		case <-u.done:
			return
		case <-t.C:
			for _, p := range u.job.Progress() {
				ev := u.e.log.Info().Str("integration", p.ID).Str("state", p.State).Int64("records", total(p.Records))
				if len(p.Nodes) > 0 {
					ev = ev.Int64("done", p.Nodes[0].Current).Int64("of", p.Nodes[0].Total)
				}
				if a := active(p.Nodes); a != nil {
					ev = ev.Str("session", strings.Join(a.Path[1:], "/")).Int64("current", a.Current).Int64("total", a.Total)
				}
				ev.Msg("export progress")
			}
		}
	}
}

// bars draws two bars per integration: the integration's own level
// (entities done of total) and the session it is working on now.
func (u *progressUI) bars() {
	defer close(u.stopped)
	p := mpb.New(mpb.WithOutput(u.e.stderr), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
	old := u.e.logs.set(p)
	defer u.e.logs.set(old)
	type pair struct {
		top, sub *mpb.Bar
		topName  string
		subName  string
		subPath  string // the session the sub bar shows
		final    bool
	}
	bars := map[string]*pair{}
	var mu sync.Mutex
	label := func(s *string) decor.Decorator {
		return decor.Any(func(decor.Statistics) string { mu.Lock(); defer mu.Unlock(); return *s }, decor.WCSyncSpaceR)
	}
	update := func() {
		for _, pr := range u.job.Progress() {
			b := bars[pr.ID]
			if b == nil {
				b = &pair{}
				b.topName = pr.ID
				b.top = p.AddBar(0, mpb.PrependDecorators(label(&b.topName), decor.CountersNoUnit("%d/%d", decor.WCSyncWidth)),
					mpb.AppendDecorators(decor.Percentage(decor.WCSyncSpace)))
				b.sub = p.AddBar(0, mpb.PrependDecorators(label(&b.subName), decor.CountersNoUnit("%d/%d", decor.WCSyncWidth)),
					mpb.AppendDecorators(decor.Percentage(decor.WCSyncSpace)))
				bars[pr.ID] = b
			}
			if b.final {
				continue
			}
			mu.Lock()
			b.topName = fmt.Sprintf("%s %s, %d records", pr.ID, pr.State, total(pr.Records))
			mu.Unlock()
			if len(pr.Nodes) > 0 {
				setBar(b.top, pr.Nodes[0].Current, pr.Nodes[0].Total)
			}
			if a := active(pr.Nodes); a != nil {
				mu.Lock()
				b.subName = "  " + strings.Join(a.Path[1:], "/")
				mu.Unlock()
				b.subPath = strings.Join(a.Path, "\x00")
				setBar(b.sub, a.Current, a.Total)
			}
			if pr.State != "running" && pr.State != "waiting" {
				b.final = true
				// The bar was last set at a tick, while its session ran;
				// it ended since then, so its final count comes from the
				// tree, not from the bar (which read 270 of 300 at the
				// last tick and would have been completed as 270/270).
				if n := nodeAt(pr.Nodes, b.subPath); n != nil {
					setBar(b.sub, n.Current, n.Total)
				}
				if pr.State == actors.StatusSucceeded {
					b.top.SetTotal(max(b.top.Current(), 1), true)
					b.sub.SetTotal(max(b.sub.Current(), 1), true)
				} else {
					b.top.Abort(false)
					b.sub.Abort(false)
				}
			}
		}
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-u.done:
			update()
			for _, b := range bars {
				if !b.final {
					b.top.Abort(false)
					b.sub.Abort(false)
				}
			}
			p.Wait()
			return
		case <-t.C:
			update()
		}
	}
}

func setBar(b *mpb.Bar, current, total int64) {
	if total > 0 {
		b.SetTotal(total, false)
	}
	b.SetCurrent(min(current, max(total, current)))
}

// active is the deepest session still running, the one worth showing.
func active(nodes []sessions.Node) *sessions.Node {
	var best *sessions.Node
	for i := range nodes {
		n := &nodes[i]
		if n.State == sessions.Running && n.Depth > 0 && (best == nil || n.Depth >= best.Depth) {
			best = n
		}
	}
	return best
}

// nodeAt is the node whose path joined by NUL is path, or nil.
func nodeAt(nodes []sessions.Node, path string) *sessions.Node {
	if path == "" {
		return nil
	}
	for i := range nodes {
		if strings.Join(nodes[i].Path, "\x00") == path {
			return &nodes[i]
		}
	}
	return nil
}

func total(m map[string]int64) int64 {
	var t int64
	for _, n := range m {
		t += n
	}
	return t
}
