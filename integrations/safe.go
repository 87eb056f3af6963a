package integrations

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
)

// PanicError is a panic recovered from an integration's goroutine.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Group runs goroutines for an integration. A panic in one becomes its
// error instead of killing the agent (protoactor cannot catch a panic in a
// goroutine it did not start), and the first error cancels the others. It is
// the one place in integrations allowed a go statement.
type Group struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
	sem    chan struct{}
	mu     sync.Mutex
	err    error
}

// NewGroup returns a group whose context ends with ctx or the first error,
// running at most limit goroutines at once (no limit when limit <= 0).
func NewGroup(ctx context.Context, limit int) (*Group, context.Context) {
	ctx, cancel := context.WithCancelCause(ctx)
	g := &Group{ctx: ctx, cancel: cancel}
	if limit > 0 {
		g.sem = make(chan struct{}, limit)
	}
	return g, ctx
}

// Go runs fn in a goroutine, waiting first for a free slot (or for the
// group's context to end, in which case fn does not run).
func (g *Group) Go(fn func(ctx context.Context) error) {
	if g.sem != nil {
		select {
		case g.sem <- struct{}{}:
		case <-g.ctx.Done():
			return
		}
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if g.sem != nil {
			defer func() { <-g.sem }()
		}
		if err := Safe(func() error { return fn(g.ctx) }); err != nil {
			g.mu.Lock()
			if g.err == nil {
				g.err = err
			}
			g.mu.Unlock()
			g.cancel(err)
		}
	}()
}

// Wait waits for every goroutine and returns the first error.
func (g *Group) Wait() error {
	g.wg.Wait()
	g.cancel(nil)
	return g.err
}

// Safe runs fn and turns a panic into a *PanicError.
func Safe(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return fn()
}
