package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	ucli "github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"courier/actors"
	"courier/config"
	"courier/integrations"
	_ "courier/integrations/all" // every integration registers itself
	"courier/queue"
	"courier/sessions"
)

func integrationFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "integration", Aliases: []string{"i"}, Usage: "integration type: " + strings.Join(integrations.Types(), ", ") + " (in send, -i is --incident-key, as in pd-send)"},
		&ucli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "the integration's config as a YAML or JSON `FILE`"},
		&ucli.StringFlag{Name: "id", Usage: "the integration's id (default: its type); records and tokens are kept under it"},
	}
}

func exportCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "export",
		Usage: "run an export by hand into NDJSON files under <root>/exports/<id>/ (or --output)",
		Description: "Records always go to local NDJSON files, also on an enrolled root: a manual export never\n" +
			"uploads to the backend. Records the backend's exports left queued under the root stay queued\n" +
			"for service-run (the summary lists them). While service-run holds the root, give the export\n" +
			"a root of its own (--root /tmp/manual), or have the backend send an export command.\n" +
			"Relative paths in a config (git repos) are relative to the root folder.\n" +
			"Ctrl-C stops it with a summary (exit 130); the next run with the same --id resumes.",
		UsageText: "courier export --integration git --config repos.yaml\n" +
			"   courier export --params export-params.json",
		Flags: append(integrationFlags(),
			&ucli.StringFlag{Name: "params", Usage: "the params of an export command (JSON or YAML `FILE`) instead of --integration/--config"},
			&ucli.BoolFlag{Name: "reprocess-historical", Usage: "ignore stored tokens: export everything again"},
			&ucli.StringFlag{Name: "output", Usage: "folder for the NDJSON files (default: <root>/exports)"},
		),
		Action: func(c *ucli.Context) error {
			e, err := setup(c, "export", true)
			if err != nil {
				return err
			}
			spec, err := exportSpec(c)
			if err != nil {
				return err
			}
			cfg, err := optionalConfig(e)
			if err != nil {
				return err
			}
			return runManualExport(c.Context, e, cfg, spec, c.String("output"))
		},
	}
}

// optionalConfig loads config.yaml when there is one: a manual export
// needs no init, the defaults do.
func optionalConfig(e *env) (*config.Config, error) {
	cfg, err := e.loadConfig()
	if errors.Is(err, config.ErrNotFound) {
		return config.Default(), nil
	}
	return cfg, err
}

// exportParams is the params of an export command (PROTOCOL.md §1).
type exportParams struct {
	Integrations        []integrationParam `json:"integrations" yaml:"integrations"`
	ReprocessHistorical bool               `json:"reprocess_historical" yaml:"reprocess_historical"`
}

type integrationParam struct {
	ID   string `json:"id" yaml:"id"`
	Type string `json:"type" yaml:"type"`
	Name string `json:"name" yaml:"name"`
	// Config stays a node, so that its errors carry the params file's lines.
	Config yaml.Node `json:"config" yaml:"config"`
}

func exportSpec(c *ucli.Context) (actors.ExportSpec, error) {
	spec := actors.ExportSpec{ID: fmt.Sprintf("manual-%d", time.Now().UnixNano()), Reprocess: c.Bool("reprocess-historical")}
	if path := c.String("params"); path != "" {
		if c.String("integration") != "" || c.String("config") != "" {
			return spec, usageError("give either --params or --integration/--config, not both")
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return spec, withCode(ExitUsage, fmt.Errorf("--params: %w", err))
		}
		var p exportParams
		if err := decodeStrict(raw, &p); err != nil {
			return spec, withCode(ExitUsage, fmt.Errorf("--params %s: %w", path, err))
		}
		if len(p.Integrations) == 0 {
			return spec, usageError("--params %s: no integrations", path)
		}
		spec.Reprocess = spec.Reprocess || p.ReprocessHistorical
		for i, ip := range p.Integrations {
			is, err := integrationSpecNode(ip.Type, ip.ID, &ip.Config)
			if err != nil {
				return spec, withCode(ExitUsage, fmt.Errorf("--params %s: integrations[%d]: %w", path, i, err))
			}
			spec.Integrations = append(spec.Integrations, is)
		}
		return spec, nil
	}
	is, err := integrationFromFlags(c)
	if err != nil {
		return spec, err
	}
	spec.Integrations = []actors.IntegrationSpec{is}
	return spec, nil
}

// configError is an integration config that does not decode or validate,
// as opposed to bad usage: validate-config answers it with valid: false.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

func integrationFromFlags(c *ucli.Context) (actors.IntegrationSpec, error) {
	typ := c.String("integration")
	if typ == "" {
		return actors.IntegrationSpec{}, usageError("--integration is required (one of %s)", strings.Join(integrations.Types(), ", "))
	}
	if _, err := integrations.Lookup(typ); err != nil {
		return actors.IntegrationSpec{}, withCode(ExitUsage, fmt.Errorf("--integration: %w", err))
	}
	id, err := integrationID(typ, c.String("id"))
	if err != nil {
		return actors.IntegrationSpec{}, withCode(ExitUsage, fmt.Errorf("--id: %w", err))
	}
	path := c.String("config")
	if path == "" {
		cfg, err := integrations.DecodeConfig(typ, nil)
		if err != nil {
			return actors.IntegrationSpec{}, withCode(ExitUsage, &configError{fmt.Errorf("no --config given, and %w (give a config as YAML or JSON with --config FILE; integrations/%s/README.md lists its keys)", err, typ)})
		}
		// Say so: a typo in the flag's name must not pass for an export
		// of the defaults.
		shown, _ := json.Marshal(cfg)
		fmt.Fprintf(c.App.ErrWriter, "courier: no --config given: %s runs with its defaults %s\n", typ, shown)
		return actors.IntegrationSpec{ID: id, Type: typ, Config: cfg}, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return actors.IntegrationSpec{}, withCode(ExitUsage, fmt.Errorf("--config: %w", err))
	}
	cfg, err := integrations.DecodeConfig(typ, raw)
	if err != nil {
		return actors.IntegrationSpec{}, withCode(ExitUsage, &configError{fmt.Errorf("--config %s: %w", path, err)})
	}
	return actors.IntegrationSpec{ID: id, Type: typ, Config: cfg}, nil
}

// integrationID is id, or typ when id is empty, when it is safe as a
// folder's name.
func integrationID(typ, id string) (string, error) {
	if id == "" {
		id = typ
	}
	if id != config.SafeName(id) {
		return "", fmt.Errorf("integration id %q: use letters, digits, '.', '_' and '-' only", id)
	}
	return id, nil
}

func integrationSpecNode(typ, id string, n *yaml.Node) (actors.IntegrationSpec, error) {
	id, err := integrationID(typ, id)
	if err != nil {
		return actors.IntegrationSpec{}, err
	}
	cfg, err := integrations.DecodeConfigNode(typ, n)
	if err != nil {
		return actors.IntegrationSpec{}, err
	}
	return actors.IntegrationSpec{ID: id, Type: typ, Config: cfg}, nil
}

// decodeStrict reads JSON or YAML, refusing unknown keys, with errors that
// name the key and its line.
func decodeStrict(raw []byte, v any) error {
	return config.DecodeStrict(raw, v)
}

func runManualExport(parent context.Context, e *env, cfg *config.Config, spec actors.ExportSpec, output string) error {
	if output == "" {
		output = e.layout.Exports()
	}
	keys := map[string]bool{}
	for _, is := range spec.Integrations {
		keys[sessions.QueueKey(is.ID)] = true
	}
	// Only the keys this run creates go to the local folder. Other keys
	// (an enrolled agent's backend exports, events) belong to the service:
	// a nil Sink leaves them pending and starts no delivery actor for them.
	sink := &countingSink{Sink: queue.DirSink{Dir: output}}
	router := func(key string) queue.Route {
		if keys[key] {
			return queue.Route{Sink: sink}
		}
		return queue.Route{}
	}
	c, err := openCore(e, cfg, router, nil)
	if err != nil {
		return err
	}
	defer c.close()
	exp, err := c.exporter(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := interruptible(parent)
	defer cancel()
	job, err := exp.Start(context.Background(), spec)
	if err != nil {
		return err
	}
	ui := newProgressUI(e, job)
	var res actors.ExportResult
	select {
	case <-job.Done():
	case <-ctx.Done():
		e.log.Warn().Msg("interrupted: cancelling the export; what was sent is kept, and the next export resumes from the last tokens (interrupt again to quit at once)")
		job.Cancel()
	case why := <-c.fatal:
		job.Cancel()
		ui.stop()
		return errors.New(why)
	}
	res, _ = job.Wait(context.Background())
	own := func(k string) bool { return keys[k] }
	if ctx.Err() == nil {
		// Records are durable in the queue; wait for the local sink to have
		// written them all, so the files are complete when the command
		// returns.
		err = c.drain(ctx, own, ui.draining)
	}
	ui.stop()
	if sig := interruptedBy(ctx); sig != nil {
		// Interrupted, while exporting or while writing: the summary says
		// how far it got; what is queued is written by the next run.
		printSummary(e.stdout, res, output, sink.written.Load())
		printLeftQueued(e.stdout, c.q, own)
		return withCode(128+int(sig.(syscall.Signal)), fmt.Errorf("interrupted by %s; the next export with the same --id under this root resumes from the last tokens and writes what is queued", signalName(sig)))
	}
	if err != nil {
		return fmt.Errorf("writing records to %s: %w (they stay queued and are written by the next run)", output, err)
	}
	printSummary(e.stdout, res, output, sink.written.Load())
	printOthersPending(ctx, e.stdout, c.q, keys)
	if res.Failed() {
		return withCode(ExitFailure, errors.New("export failed (see above, and logs/export)"))
	}
	return nil
}

// countingSink counts the records the wrapped sink wrote in this run, so
// the summary says what is on disk, not what was exported.
type countingSink struct {
	queue.Sink
	written atomic.Int64
}

func (s *countingSink) Deliver(ctx context.Context, key string, batch []queue.Message) error {
	err := s.Sink.Deliver(ctx, key, batch)
	if err == nil {
		s.written.Add(int64(len(batch)))
	}
	return err
}

// interruptedError is the cause of an export's context cancelled by a
// signal.
type interruptedError struct{ sig os.Signal }

func (e *interruptedError) Error() string { return "interrupted by " + signalName(e.sig) }

func signalName(s os.Signal) string {
	switch s {
	case syscall.SIGINT:
		return "SIGINT (Ctrl-C)"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return s.String()
}

// interruptible is parent, cancelled by the first SIGINT or SIGTERM with
// the signal as its cause. The first signal also restores the default
// action, so a second one quits at once (the queue is crash-safe). The
// watching goroutine ends with the returned cancel.
func interruptible(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		defer signal.Stop(sigs)
		select {
		case s := <-sigs:
			cancel(&interruptedError{sig: s})
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(nil) }
}

// interruptedBy is the signal that cancelled ctx, or nil.
func interruptedBy(ctx context.Context) os.Signal {
	var ie *interruptedError
	if errors.As(context.Cause(ctx), &ie) {
		return ie.sig
	}
	return nil
}

// printLeftQueued says how many of this run's records are still queued
// after an interrupt, and why the sink has not written them when it keeps
// failing.
func printLeftQueued(w io.Writer, q *queue.Queue, own func(string) bool) {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	s, err := q.Status(ctx)
	if err != nil {
		return
	}
	for _, k := range s.Keys {
		if !own(k.Key) || k.Pending == 0 {
			continue
		}
		fmt.Fprintf(w, "%s: %d records queued, not yet written: the next export with the same --id writes them", k.Key, k.Pending)
		if k.LastError != "" {
			fmt.Fprintf(w, " (last error writing them: %s)", k.LastError)
		}
		fmt.Fprintln(w)
	}
}

// printOthersPending says which keys this run left alone because they are
// not its own, so an operator does not wonder where those records went.
func printOthersPending(ctx context.Context, w io.Writer, q *queue.Queue, own map[string]bool) {
	s, err := q.Status(ctx)
	if err != nil {
		return
	}
	var lines []string
	for _, k := range s.Keys {
		if own[k.Key] || k.Pending == 0 {
			continue
		}
		lines = append(lines, fmt.Sprintf("  %s: %d pending", keyLabel(k.Key), k.Pending))
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(w, "\nother routing keys have records waiting for the service (`courier service-run` delivers them; this run left them alone):\n%s\n",
		strings.Join(lines, "\n"))
}

// printSummary prints the table of integrations, their errors, and how
// many records the local sink wrote in this run (written) under output.
func printSummary(w io.Writer, res actors.ExportResult, output string, written int64) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INTEGRATION\tSTATUS\tRECORDS\tDURATION\tRESTARTS\tINCREMENTAL")
	for _, r := range res.Integrations {
		models := make([]string, 0, len(r.Records))
		var total int64
		for m, n := range r.Records {
			models = append(models, fmt.Sprintf("%s %d", m, n))
			total += n
		}
		slices.Sort(models)
		recs := fmt.Sprint(total)
		if len(models) > 0 {
			recs += " (" + strings.Join(models, ", ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%v\n", r.ID, r.Status, recs,
			(time.Duration(r.DurationMS) * time.Millisecond).Round(time.Millisecond), r.Restarts, r.Incremental)
	}
	_ = tw.Flush()
	var exported int64
	for _, r := range res.Integrations {
		for _, n := range r.Records {
			exported += n
		}
	}
	for _, r := range res.Integrations {
		if r.Error != "" {
			fmt.Fprintf(w, "\n%s: %s\n", r.ID, r.Error)
		}
		if r.Stack != "" {
			fmt.Fprintf(w, "%s\n", r.Stack)
		}
		for _, ee := range r.EntityErrors {
			fmt.Fprintf(w, "%s: %s: %s\n", r.ID, strings.Join(ee.Path, " / "), ee.Error)
		}
	}
	switch {
	case written > 0:
		fmt.Fprintf(w, "\n%d records written under %s\n", written, output)
	case exported == 0 && !res.Failed():
		fmt.Fprintf(w, "\nno records written: nothing new since the last export\n")
	default:
		fmt.Fprintf(w, "\nno records written\n")
	}
}
