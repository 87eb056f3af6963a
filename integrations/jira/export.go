package jira

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"courier/integrations"
	"courier/sessions"
)

// sendBatch bounds records per Send of users and projects.
const sendBatch = 500

// fatalError ends the whole export (records that cannot be made durable,
// a refused login, cancellation), as opposed to one project's failure.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

func fatal(err error) error {
	if err == nil {
		return nil
	}
	return &fatalError{err: err}
}

// isFatal tells an error that must end the export from one that ends only
// the entity (a project, the user listing) it happened in.
func isFatal(ctx context.Context, err error) bool {
	var (
		fe *fatalError
		pe *integrations.PanicError // a bug: the runtime restarts the integration
	)
	return ctx.Err() != nil || isCredentials(err) || errors.As(err, &fe) || errors.As(err, &pe)
}

// exportError is what Export returns for a fatal error: a refused login
// as its own clear sentence, wherever it happened.
func exportError(err error) error {
	var ce *credentialsError
	if errors.As(err, &ce) {
		return ce
	}
	return err
}

// progress is the root session's progress: projects done of projects.
// Touching it again while the HTTP layer waits keeps the stall watchdog
// from mistaking a rate-limit wait for a hang.
type progress struct {
	root        *sessions.Session
	mu          sync.Mutex
	done, total int64
}

func (p *progress) set(done, total int64) {
	p.mu.Lock()
	p.done, p.total = done, total
	p.mu.Unlock()
	p.root.Progress(done, total)
}

func (p *progress) step() {
	p.mu.Lock()
	p.done++
	d, t := p.done, p.total
	p.mu.Unlock()
	p.root.Progress(d, t)
}

func (p *progress) touch() {
	p.mu.Lock()
	d, t := p.done, p.total
	p.mu.Unlock()
	p.root.Progress(d, t)
}

// Export sends users, projects, and each project's issues and comments
// (incrementally, see issues.go). A project that fails is an entity error
// and the others go on; the export fails on a refused login, on records
// that cannot be made durable, or when every project failed.
func (j *Jira) Export(ctx context.Context, root *sessions.Session) error {
	prog := &progress{root: root}
	j.setOnWait(prog.touch)
	defer j.setOnWait(nil)

	s, err := j.connect(ctx)
	if err != nil {
		return err
	}
	log := j.opts.Logger
	log.Info().Str("deployment", s.deployment).Str("version", s.version).Str("time_zone", s.zoneName).Msg("connected to Jira")
	fieldNames, err := j.api.fieldNames(ctx)
	if err != nil {
		if isFatal(ctx, err) {
			return err
		}
		log.Warn().Err(err).Msg("cannot read field names; custom fields go without their names")
	}
	if err := j.exportUsers(ctx, root, s); err != nil {
		return exportError(err)
	}
	projects, failed, err := j.exportProjects(ctx, root, s)
	if err != nil {
		return exportError(err)
	}
	prog.set(0, int64(len(projects)+len(failed)))
	for range failed {
		prog.step()
	}
	var (
		mu       sync.Mutex
		failures = failed
	)
	grp, _ := integrations.NewGroup(ctx, parallelProjects)
	for _, p := range projects {
		grp.Go(func(ctx context.Context) error {
			x := &projectExport{j: j, s: s, p: p, fieldNames: fieldNames}
			ps := root.Track("project:" + p.Key)
			start := time.Now()
			err := x.run(ctx, ps)
			plog := log.With().Str("project", p.Key).Logger()
			switch {
			case err == nil:
				plog.Info().Int64("issues", x.issuesSent).Int64("comments", x.commentsSent).Dur("took_ms", time.Since(start)).Msg("project exported")
				err = ps.Done(ctx, "")
			case isFatal(ctx, err):
				return err
			default:
				plog.Error().Err(err).Msg("project failed; the others go on")
				ps.Fail(err)
				mu.Lock()
				failures = append(failures, fmt.Errorf("%s: %w", p.Key, err))
				mu.Unlock()
				err = nil
			}
			prog.step()
			return err
		})
	}
	if err := grp.Wait(); err != nil {
		return exportError(err)
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if n := len(projects) + len(failed); n > 0 && len(failures) == n {
		return fmt.Errorf("jira: every project failed: %w", errors.Join(failures...))
	}
	if len(projects)+len(failed) == 0 {
		log.Warn().Msg("the user sees no project: no issues exported")
	}
	return root.Done(ctx, "")
}

// exportUsers sends every user in the root's user session. A listing that
// fails is an entity error of that session.
func (j *Jira) exportUsers(ctx context.Context, root *sessions.Session, s *site) error {
	us, _, err := root.Open(ModelUser)
	if err != nil {
		return err
	}
	var (
		batch []sessions.Record
		n     int64
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := us.Send(ctx, batch...); err != nil {
			return fatal(err)
		}
		n += int64(len(batch))
		batch = batch[:0]
		us.Progress(n, 0)
		return nil
	}
	err = j.api.users(ctx, s.cloud, func(u apiUser) error {
		m := j.user(&u)
		if m.ID == "" {
			return nil
		}
		batch = append(batch, sessions.Record{ID: j.recordID(ModelUser, m.ID), Data: m})
		if len(batch) == sendBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	switch {
	case err == nil:
		us.Progress(n, n)
		return us.Done(ctx, "")
	case isFatal(ctx, err):
		return err
	default:
		j.opts.Logger.Error().Err(err).Msg("cannot list users; projects go on")
		us.Fail(fmt.Errorf("list users: %w", err))
		return nil
	}
}

// exportProjects sends the project records and returns the projects to
// export. With a projects filter each key is read on its own; one that
// cannot be read (404: missing or not visible, 403) is an entity error of
// its project session and is returned among failed.
func (j *Jira) exportProjects(ctx context.Context, root *sessions.Session, s *site) ([]apiProject, []error, error) {
	ps, _, err := root.Open(ModelProject)
	if err != nil {
		return nil, nil, err
	}
	var (
		list   []apiProject
		failed []error
	)
	if len(j.cfg.Projects) > 0 {
		ids := map[string]bool{}
		for _, key := range j.cfg.Projects {
			p, err := j.api.project(ctx, key)
			if err != nil {
				if isFatal(ctx, err) {
					return nil, nil, err
				}
				err = fmt.Errorf("project %s: %s", key, projectProblem(err))
				j.opts.Logger.Error().Err(err).Msg("project failed; the others go on")
				root.Track("project:" + key).Fail(err)
				failed = append(failed, err)
				continue
			}
			if ids[p.ID] {
				continue // an old key of a project already listed
			}
			ids[p.ID] = true
			list = append(list, p)
		}
	} else {
		err := j.api.allProjects(ctx, s.cloud, func(p apiProject) error {
			list = append(list, p)
			return nil
		})
		if err != nil {
			if isFatal(ctx, err) {
				return nil, nil, err
			}
			return nil, nil, fmt.Errorf("list projects: %w", err)
		}
	}
	recs := make([]sessions.Record, 0, len(list))
	for i := range list {
		recs = append(recs, sessions.Record{ID: j.recordID(ModelProject, list[i].ID), Data: j.project(&list[i])})
	}
	if err := ps.Send(ctx, recs...); err != nil {
		return nil, nil, err
	}
	ps.Progress(int64(len(recs)), int64(len(recs)))
	if err := ps.Done(ctx, ""); err != nil {
		return nil, nil, err
	}
	return list, failed, nil
}
