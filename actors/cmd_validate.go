package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"courier/backend"
	"courier/integrations"
	"courier/logging"
)

// validateHandler answers validate-config: is the integration's config
// valid, and can what it names be reached.
var validateHandler = commandHandler{prepare: noPlan, run: task(validateCmd)}

func noPlan(backend.Command) (plan, error) { return plan{}, nil }

// task adapts a command that runs an integration directly and returns its
// output (validate, onboarding) to a handler.
func task(fn func(ctx context.Context, s *Service, c backend.Command) (any, error)) func(context.Context, *Service, backend.Command, plan) backend.Result {
	return func(ctx context.Context, s *Service, c backend.Command, _ plan) backend.Result {
		var out any
		err := integrations.Safe(func() error {
			var err error
			out, err = fn(ctx, s, c)
			return err
		})
		switch {
		case ctx.Err() != nil:
			// An answer made while cancelled or interrupted may be the
			// cancellation's (a validation that could not reach its
			// server): it is not the answer. An interrupted command runs
			// again at the next start.
			return backend.Result{Status: ResultCancelled, Error: "cancelled"}
		case err != nil:
			var p *integrations.PanicError
			if errors.As(err, &p) {
				s.opts.Log.Error().Str(logging.FieldCommand, c.ID).Str("stack", string(p.Stack)).Msg("command panicked")
			}
			return backend.Result{Status: ResultFailed, Error: err.Error()}
		}
		b, _ := json.Marshal(out)
		return backend.Result{Status: ResultSucceeded, Output: b}
	}
}

func validateCmd(ctx context.Context, s *Service, c backend.Command) (any, error) {
	var p struct {
		Integration integrationParam `json:"integration"`
	}
	if err := decodeParams(c.Params, &p); err != nil {
		return nil, fmt.Errorf("params: %w", err)
	}
	is, err := p.Integration.spec()
	if err != nil {
		// A config that does not decode is an answer, not a failure: the
		// backend asked whether it is valid.
		return integrations.Validation{Valid: false, Errors: []string{err.Error()}}, nil
	}
	inst, closer, err := s.instance(c, is)
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return Validate(ctx, inst)
}

// Validate runs an integration's Validate, a panic in it returned as an
// error: the validate-config command and its manual run share it.
func Validate(ctx context.Context, inst integrations.Integration) (integrations.Validation, error) {
	var v integrations.Validation
	err := integrations.Safe(func() error { v = inst.Validate(ctx); return nil })
	return v, err
}

// instance builds the integration a command runs directly; the closer ends
// its log file.
func (s *Service) instance(c backend.Command, is IntegrationSpec) (integrations.Integration, io.Closer, error) {
	reg, err := integrations.Lookup(is.Type)
	if err != nil {
		return nil, nil, err
	}
	log := s.opts.Log.With().Str("integration", is.ID).Logger()
	var closer io.Closer = io.NopCloser(nil)
	if s.opts.IntegrationLogger != nil {
		log, closer = s.opts.IntegrationLogger(is.ID)
	}
	log = log.With().Str(logging.FieldCommand, c.ID).Logger()
	inst, err := reg.New(integrations.Options{ID: is.ID, Logger: log, CacheDir: s.opts.CacheDir(is.ID), BaseDir: s.opts.BaseDir}, is.Config)
	if err != nil {
		_ = closer.Close()
		return nil, nil, err
	}
	return inst, closer, nil
}
