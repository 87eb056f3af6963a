package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"courier/events"
)

// sendCommand keeps the flags of PagerDuty's agent's pd-send, so scripts
// written for it work with courier.
func sendCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "send",
		Usage: "hand an event to the running service-run (PagerDuty Events API v2, or v1)",
		UsageText: "courier send -k ROUTING_KEY -t trigger -d SUMMARY -s SOURCE -e SEVERITY [-f key=value ...]\n" +
			"   courier send --change -k ROUTING_KEY -d SUMMARY [-s SOURCE] [-f key=value ...] [--link URL [--link-text TEXT]]...",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "routing-key", Aliases: []string{"k"}, Usage: "integration (routing) key, 32 characters", Required: true},
			&ucli.StringFlag{Name: "event-type", Aliases: []string{"t"}, Usage: "trigger, acknowledge or resolve (required unless --change)"},
			&ucli.BoolFlag{Name: "change", Usage: "send a PagerDuty Change Event (summary, source, custom details, links) instead of an alert"},
			&ucli.StringSliceFlag{Name: "link", Usage: "change event: a link's URL (repeat)"},
			&ucli.StringSliceFlag{Name: "link-text", Usage: "change event: the text of the link given at the same position (repeat)"},
			&ucli.StringFlag{Name: "summary", Aliases: []string{"d", "description"}, Usage: "summary of the event (trigger)"},
			&ucli.StringFlag{Name: "source", Aliases: []string{"s"}, Usage: "where the event comes from (trigger; default: this host's name)"},
			&ucli.StringFlag{Name: "severity", Aliases: []string{"e"}, Usage: "critical, error, warning or info (trigger)", Value: "error"},
			&ucli.StringFlag{Name: "client", Aliases: []string{"c"}, Usage: "name of the monitoring client"},
			&ucli.StringFlag{Name: "client-url", Aliases: []string{"u"}, Usage: "URL of the monitoring client"},
			&ucli.StringFlag{Name: "dedup-key", Aliases: []string{"y", "i", "incident-key"}, Usage: "deduplication key (required for acknowledge and resolve); -i and --incident-key as in pd-send (in export, -i is --integration)"},
			&ucli.StringSliceFlag{Name: "field", Aliases: []string{"f"}, Usage: "custom detail key=value (repeat)"},
			&ucli.StringFlag{Name: "api-version", Usage: "v2, or v1 for the older Events API", Value: "v2"},
		},
		Action: func(c *ucli.Context) error {
			e, err := setup(c, "send", false)
			if err != nil {
				return err
			}
			body, err := buildSend(c)
			if err != nil {
				return err
			}
			lc, err := newLocalClient(e)
			if err != nil {
				return err
			}
			var out struct {
				Status   string `json:"status"`
				Message  string `json:"message"`
				DedupKey string `json:"dedup_key"`
			}
			if err := lc.do(e.ctx, "POST", "/v1/send", body, &out); err != nil {
				return apiExit(err)
			}
			if out.DedupKey == "" {
				_, err = fmt.Fprintf(e.stdout, "%s: %s\n", out.Status, out.Message)
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "%s: %s (dedup_key %s)\n", out.Status, out.Message, out.DedupKey)
			return err
		},
	}
}

func buildSend(c *ucli.Context) (events.SendRequest, error) {
	details := map[string]string{}
	for _, f := range c.StringSlice("field") {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return events.SendRequest{}, usageError("-f %q: want key=value", f)
		}
		details[k] = v
	}
	source := c.String("source")
	if source == "" {
		source = hostname()
	}
	if c.Bool("change") {
		return buildChange(c, source, details)
	}
	if c.String("event-type") == "" {
		return events.SendRequest{}, usageError("missing flag --event-type (-t): trigger, acknowledge or resolve; or --change for a change event (courier send --help shows the flags)")
	}
	if len(c.StringSlice("link")) > 0 || len(c.StringSlice("link-text")) > 0 {
		return events.SendRequest{}, usageError("--link and --link-text go with --change")
	}
	var ev any
	switch v := c.String("api-version"); v {
	case events.APIv2:
		e := events.Event{
			RoutingKey: c.String("routing-key"), EventAction: c.String("event-type"), DedupKey: c.String("dedup-key"),
		}
		if e.EventAction == events.ActionTrigger {
			// PagerDuty reads client and client_url on triggers only.
			e.Client, e.ClientURL = c.String("client"), c.String("client-url")
			e.Payload = &events.Payload{Summary: c.String("summary"), Source: source, Severity: c.String("severity")}
			if len(details) > 0 {
				e.Payload.CustomDetails = details
			}
		}
		ev = e
	case events.APIv1:
		e := events.V1Event{
			ServiceKey: c.String("routing-key"), EventType: c.String("event-type"), IncidentKey: c.String("dedup-key"),
			Description: c.String("summary"), Client: c.String("client"), ClientURL: c.String("client-url"),
		}
		if len(details) > 0 {
			e.Details = details
		}
		ev = e
	default:
		return events.SendRequest{}, usageError("--api-version %q: want v2 or v1", v)
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		return events.SendRequest{}, err
	}
	return events.SendRequest{APIVersion: c.String("api-version"), Event: raw}, nil
}

// buildChange builds a change event: -d is its summary, -s its source, -f
// its custom details, and --link/--link-text pair up by position.
func buildChange(c *ucli.Context, source string, details map[string]string) (events.SendRequest, error) {
	for _, f := range []string{"event-type", "dedup-key", "client", "client-url"} {
		if c.IsSet(f) {
			return events.SendRequest{}, usageError("--%s does not go with --change: a change event has no action, dedup key or client", f)
		}
	}
	if v := c.String("api-version"); v != events.APIv2 {
		return events.SendRequest{}, usageError("--change is an Events API v2 event; drop --api-version %s", v)
	}
	hrefs, texts := c.StringSlice("link"), c.StringSlice("link-text")
	if len(texts) > len(hrefs) {
		return events.SendRequest{}, usageError("%d --link-text for %d --link: each text goes with the link at its position", len(texts), len(hrefs))
	}
	e := events.ChangeEvent{
		RoutingKey: c.String("routing-key"),
		Payload:    &events.ChangePayload{Summary: c.String("summary"), Source: source},
	}
	if len(details) > 0 {
		e.Payload.CustomDetails = details
	}
	for i, h := range hrefs {
		l := events.Link{Href: h}
		if i < len(texts) {
			l.Text = texts[i]
		}
		e.Links = append(e.Links, l)
	}
	raw, err := json.Marshal(e)
	if err != nil {
		return events.SendRequest{}, err
	}
	return events.SendRequest{APIVersion: events.APIChange, Event: raw}, nil
}
