package actors

import (
	"context"
	"encoding/json"
	"fmt"

	"courier/backend"
	"courier/integrations"
	"courier/queue"
	"courier/sessions"
)

// onboardHandler answers export-onboard-data: an integration's users,
// repos or projects, sent through the queue under OnboardKey.
var onboardHandler = commandHandler{prepare: noPlan, run: task(onboardCmd)}

// OnboardKey is the routing key of a command's onboarding objects.
func OnboardKey(commandID string) string { return "onboard/" + commandID }

// CheckObjectType says what is wrong with an onboarding object type; the
// caller names where it came from (a param, a flag).
func CheckObjectType(typ string) error {
	switch typ {
	case integrations.ObjectUsers, integrations.ObjectRepos, integrations.ObjectProjects:
		return nil
	}
	return fmt.Errorf("%q: want users, repos or projects", typ)
}

// ListObjects runs an integration's Onboard, a panic in it returned as an
// error: the export-onboard-data command and its manual run share it.
func ListObjects(ctx context.Context, inst integrations.Integration, typ string, emit func(integrations.Object) error) error {
	return integrations.Safe(func() error { return inst.Onboard(ctx, typ, emit) })
}

func onboardCmd(ctx context.Context, s *Service, c backend.Command) (any, error) {
	var p struct {
		Integration integrationParam `json:"integration"`
		ObjectType  string           `json:"object_type"`
	}
	if err := decodeParams(c.Params, &p); err != nil {
		return nil, fmt.Errorf("params: %w", err)
	}
	if err := CheckObjectType(p.ObjectType); err != nil {
		return nil, fmt.Errorf("params: object_type %w%s", err, misspeltParams(c.Params, "integration", "object_type"))
	}
	is, err := p.Integration.spec()
	if err != nil {
		return nil, fmt.Errorf("params: integration: %w", err)
	}
	inst, closer, err := s.instance(c, is)
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	key := OnboardKey(c.ID)
	var batch [][]byte
	count := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := s.opts.Queue.Enqueue(ctx, key, batch, queue.Wait)
		batch = batch[:0]
		return err
	}
	err = ListObjects(ctx, inst, p.ObjectType, func(o integrations.Object) error {
		data, err := json.Marshal(o)
		if err != nil {
			return err
		}
		env, err := json.Marshal(sessions.Envelope{Command: c.ID, Integration: p.Integration.ID, Model: p.ObjectType,
			ID: o.ID, Session: []string{p.Integration.ID, p.ObjectType}, Data: data})
		if err != nil {
			return err
		}
		batch = append(batch, env)
		count++
		if len(batch) == 500 {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return nil, err
	}
	return map[string]any{"object_type": p.ObjectType, "count": count}, nil
}
