package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"courier/backend"
	"courier/logging"
)

// exportHandler runs a backend export under the export supervisor and
// reports its progress while it runs.
var exportHandler = commandHandler{prepare: prepareExport, run: runExport, shipLogs: true}

// exportParams are the params of an export command.
type exportParams struct {
	Integrations        []integrationParam `json:"integrations"`
	ReprocessHistorical bool               `json:"reprocess_historical"`
}

func prepareExport(c backend.Command) (plan, error) {
	var p exportParams
	if err := decodeParams(c.Params, &p); err != nil {
		return plan{}, err
	}
	if len(p.Integrations) == 0 {
		return plan{}, errors.New("no integrations")
	}
	spec := ExportSpec{ID: c.ID, CommandID: c.ID, Reprocess: p.ReprocessHistorical}
	var holds []string
	for i, ip := range p.Integrations {
		is, err := ip.spec()
		if err != nil {
			return plan{}, fmt.Errorf("integrations[%d]: %w", i, err)
		}
		spec.Integrations = append(spec.Integrations, is)
		holds = append(holds, is.ID)
	}
	return plan{holds: holds, spec: spec}, nil
}

func runExport(ctx context.Context, s *Service, c backend.Command, p plan) backend.Result {
	job, err := s.opts.Exporter.Start(ctx, p.spec.(ExportSpec))
	if err != nil {
		return backend.Result{Status: ResultFailed, Error: err.Error()}
	}
	// Progress is best effort and never queued: only the latest matters.
	t := time.NewTicker(s.opts.ProgressEvery)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-job.Done():
			res, _ := job.Wait(context.Background())
			return exportResult(res, job)
		case <-t.C:
			last = postProgress(ctx, s, c.ID, job, last)
		}
	}
}

// postProgress posts the job's session trees when they changed since the
// last post (last is that post) and returns what it posted.
func postProgress(ctx context.Context, s *Service, id string, job *Job, last string) string {
	var p backend.Progress
	for _, ip := range job.Progress() {
		for _, n := range ip.Nodes {
			p.Sessions = append(p.Sessions, backend.ProgressSession{Path: n.Path, Kind: string(n.Kind), Current: n.Current, Total: n.Total, State: string(n.State)})
		}
	}
	if p.Sessions == nil {
		return last
	}
	b, _ := json.Marshal(p)
	if string(b) == last {
		return last
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.opts.Backend.Progress(pctx, id, p); err != nil && ctx.Err() == nil {
		s.opts.Log.Debug().Err(err).Str(logging.FieldCommand, id).Msg("progress report failed")
	}
	return string(b)
}

func exportResult(res ExportResult, job *Job) backend.Result {
	out, _ := json.Marshal(res)
	r := backend.Result{Status: ResultSucceeded, Output: out}
	var failed, cancelled []string
	for _, i := range res.Integrations {
		switch i.Status {
		case StatusFailed:
			failed = append(failed, i.ID)
		case StatusCancelled:
			cancelled = append(cancelled, i.ID)
		}
	}
	switch {
	case len(failed) > 0:
		r.Status, r.Error = ResultFailed, fmt.Sprintf("%d of %d integrations failed: %s", len(failed), len(res.Integrations), strings.Join(failed, ", "))
	case len(cancelled) > 0 || errors.Is(context.Cause(job.ctx), errCancelled):
		r.Status, r.Error = ResultCancelled, "cancelled"
	}
	return r
}
