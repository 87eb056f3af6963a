package backend

import (
	"context"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Bounds of a poll's wait (PROTOCOL.md §1: 1..60 seconds).
const (
	MinWait = time.Second
	MaxWait = 60 * time.Second
)

// Commands long-polls for commands (GET /commands?wait=N). wait is rounded
// up to whole seconds and clamped to MinWait..MaxWait; the request's timeout
// is wait plus Options.Timeout, so a quiet poll is never cut short. The
// answer may be empty. The backend repeats a command on every poll until it
// is acknowledged (Ack). A command without an id (which no one could
// acknowledge) is left out and logged.
func (c *Client) Commands(ctx context.Context, wait time.Duration) ([]Command, error) {
	secs := int64(math.Ceil(wait.Seconds()))
	secs = min(max(secs, int64(MinWait/time.Second)), int64(MaxWait/time.Second))
	var out struct {
		Commands []Command `json:"commands"`
	}
	err := c.do(ctx, call{
		method:  http.MethodGet,
		path:    "/commands",
		query:   url.Values{"wait": {strconv.FormatInt(secs, 10)}},
		timeout: time.Duration(secs)*time.Second + c.timeout,
	}, &out)
	if err != nil {
		return nil, err
	}
	cmds := make([]Command, 0, len(out.Commands))
	for _, cmd := range out.Commands {
		if cmd.ID == "" {
			c.log.Error().Str("type", cmd.Type).Msg("the backend sent a command without an id; ignoring it")
			continue
		}
		cmds = append(cmds, cmd)
	}
	return cmds, nil
}

// Ack acknowledges a command (POST /commands/{id}/ack), after it is written
// to the journal; the backend then stops re-delivering it.
func (c *Client) Ack(ctx context.Context, id string) error {
	if err := checkID(id, "ack"); err != nil {
		return err
	}
	return c.do(ctx, call{method: http.MethodPost, path: commandPath(id, "ack")}, nil)
}

// Result posts a command's terminal result (POST /commands/{id}/result)
// directly. The agent normally sends results through the durable queue
// instead (EncodeResult, ResultsKey, Sink); the backend treats a repeat as a
// no-op.
func (c *Client) Result(ctx context.Context, id string, r Result) error {
	if err := checkID(id, "result"); err != nil {
		return err
	}
	return c.postJSON(ctx, commandPath(id, "result"), r, nil)
}

// Progress posts a command's progress (POST /commands/{id}/progress). Best
// effort: the caller drops it on error, only the latest matters.
func (c *Client) Progress(ctx context.Context, id string, p Progress) error {
	if err := checkID(id, "progress"); err != nil {
		return err
	}
	if p.Sessions == nil {
		p.Sessions = []ProgressSession{}
	}
	return c.postJSON(ctx, commandPath(id, "progress"), p, nil)
}

// Heartbeat posts the agent's heartbeat (POST /heartbeat).
func (c *Client) Heartbeat(ctx context.Context, hb Heartbeat) error {
	if hb.Running == nil {
		hb.Running = []string{}
	}
	return c.postJSON(ctx, "/heartbeat", hb, nil)
}

func commandPath(id, action string) string {
	return "/commands/" + url.PathEscape(id) + "/" + action
}

func checkID(id, action string) error {
	if id == "" {
		return &Error{Kind: Permanent, Op: "POST " + APIPrefix + "/commands/{id}/" + action, Message: "no command id"}
	}
	return nil
}
