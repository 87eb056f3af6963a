package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	ucli "github.com/urfave/cli/v2"

	"courier/events"
	"courier/internal/redact"
	"courier/queue"
)

func statusCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "status",
		Usage: "show the queue of the running service-run: counts by routing key and state, and each key's last error",
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "json", Usage: "print the local API's JSON"},
			&ucli.BoolFlag{Name: "show-keys", Usage: "show PagerDuty routing keys whole (they are credentials; by default they are redacted to a form that retry -k accepts)"},
		},
		Action: func(c *ucli.Context) error {
			e, lc, err := localAPI(c, "status")
			if err != nil {
				return err
			}
			var s queue.Status
			if err := lc.do(e.ctx, "GET", "/v1/queue/status", nil, &s); err != nil {
				return apiExit(err)
			}
			if !c.Bool("show-keys") {
				for i := range s.Keys {
					if !redact.IsRedacted(s.Keys[i].Key) {
						s.Keys[i].Key = redact.QueueKey(s.Keys[i].Key)
					}
				}
			}
			if c.Bool("json") {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ROUTING KEY\tPENDING\tDELIVERING\tFAILED\tDELIVERED (1H)\tOLDEST PENDING\tLAST ERROR")
			for _, k := range s.Keys {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\n", k.Key, k.Pending, k.Delivering, k.Failed,
					k.DeliveredHour, age(k.OldestPendingS), lastError(k))
			}
			fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t%s\t\n", s.Pending, s.Delivering, s.Failed, s.DeliveredHour, age(s.OldestPendingS))
			if err := tw.Flush(); err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "\npending %s, failed %s, on disk %s\n", size(s.PendingBytes), size(s.FailedBytes), size(s.DiskBytes))
			if up := time.Since(lc.started); err == nil && !lc.started.IsZero() && up < time.Hour {
				// The delivered counts live in the running process, as the
				// /metrics counters do; say so rather than pass a young
				// process's figure for an hour's.
				_, err = fmt.Fprintf(e.stdout, "delivered (1h) counts from this service-run's start %s ago; it starts from 0 at every start\n", up.Round(time.Second))
			}
			return err
		},
	}
}

func retryCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "retry",
		Usage: "move failed (dead-lettered) items back to pending, for one routing key or all",
		Flags: []ucli.Flag{&ucli.StringFlag{Name: "routing-key", Aliases: []string{"k"}, Usage: "only this key: a PagerDuty routing key, whole or as courier status shows it, or a queue key such as export/int_1"}},
		Action: func(c *ucli.Context) error {
			e, lc, err := localAPI(c, "retry")
			if err != nil {
				return err
			}
			var out events.RetryResponse
			if err := lc.do(e.ctx, "POST", "/v1/queue/retry", events.RetryRequest{RoutingKey: c.String("routing-key")}, &out); err != nil {
				return apiExit(err)
			}
			_, err = fmt.Fprintf(e.stdout, "moved %d failed item(s) back to pending\n", out.Retried)
			return err
		},
	}
}

// lastError puts the time first, so that the message, which may be long,
// ends the line.
func lastError(k queue.KeyStatus) string {
	if k.LastError == "" {
		return ""
	}
	if k.LastErrorAt.IsZero() {
		return k.LastError
	}
	return k.LastErrorAt.UTC().Format(time.RFC3339) + " " + k.LastError
}

func age(s float64) string {
	if s <= 0 {
		return "-"
	}
	return (time.Duration(s * float64(time.Second))).Round(time.Second).String()
}

func size(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}
