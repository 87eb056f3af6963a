package cli

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	ucli "github.com/urfave/cli/v2"

	"courier/events"
	"courier/internal/redact"
)

func queueCommand() *ucli.Command {
	keyFlag := func(usage string) *ucli.StringFlag {
		return &ucli.StringFlag{Name: "routing-key", Aliases: []string{"k"}, Usage: usage}
	}
	jsonFlag := &ucli.BoolFlag{Name: "json", Usage: "print the local API's JSON"}
	showKeys := &ucli.BoolFlag{Name: "show-keys", Usage: "show PagerDuty routing keys whole (they are credentials)"}
	return &ucli.Command{
		Name:  "queue",
		Usage: "look into the queue of the running service-run: list, show and purge dead letters",
		Subcommands: []*ucli.Command{
			{
				Name:  "ls",
				Usage: "list dead letters (or, with --state pending, what waits), oldest first: seq, age, size, and why each failed",
				Flags: []ucli.Flag{
					keyFlag("only this key: a PagerDuty routing key, whole or as courier status shows it, or a queue key such as export/int_1"),
					&ucli.StringFlag{Name: "state", Value: "failed", Usage: "failed or pending"},
					&ucli.IntFlag{Name: "limit", Value: 100, Usage: "list at most this many"},
					&ucli.StringFlag{Name: "after", Usage: "continue a listing: the cursor the previous one printed"},
					jsonFlag, showKeys,
				},
				Action: queueLs,
			},
			{
				Name:      "show",
				Usage:     "show one item with its stored event (routing keys redacted unless --show-keys)",
				ArgsUsage: "SEQ",
				Flags: []ucli.Flag{keyFlag("its key (required)"),
					&ucli.StringFlag{Name: "seq", Usage: "SEQ as a flag, the same as the argument"}, jsonFlag, showKeys},
				Action: queueShow,
			},
			{
				Name:  "purge",
				Usage: "drop dead letters for good: of one key (-k) or every key (--all), optionally one (--seq) or those older than (--older-than)",
				Flags: []ucli.Flag{
					keyFlag("the key whose dead letters to drop"),
					&ucli.BoolFlag{Name: "all", Usage: "every key's dead letters (required instead of -k, so nothing is purged by accident)"},
					&ucli.StringFlag{Name: "seq", Usage: "only this dead letter (needs -k)"},
					&ucli.StringFlag{Name: "older-than", Usage: "only those that failed longer ago than this (36h, 7d)"},
					&ucli.StringFlag{Name: "state", Value: "failed", Usage: "failed only: pending items are never purged"},
					&ucli.BoolFlag{Name: "yes", Usage: "confirm: the dead letters are dropped for good"},
					jsonFlag, showKeys,
				},
				Action: queuePurge,
			},
		},
	}
}

func shownKey(c *ucli.Context, k string) string {
	if c.Bool("show-keys") || redact.IsRedacted(k) {
		return k
	}
	return redact.QueueKey(k)
}

func printJSON(e *env, v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func queueLs(c *ucli.Context) error {
	if c.NArg() > 0 {
		return usageError("queue ls takes no arguments (got %q); use -k KEY to pick a key", c.Args().First())
	}
	state := c.String("state")
	if state != "failed" && state != "pending" {
		return usageError("--state %q: use failed or pending", state)
	}
	limit := c.Int("limit")
	if limit < 1 {
		return usageError("--limit %d: must be at least 1", limit)
	}
	e, lc, err := localAPI(c, "queue")
	if err != nil {
		return err
	}
	var all events.ItemsResponse
	after := c.String("after")
	for len(all.Items) < limit {
		v := url.Values{"state": {state}, "limit": {strconv.Itoa(min(limit-len(all.Items), 1000))}}
		if k := c.String("routing-key"); k != "" {
			v.Set("routing_key", k)
		}
		if after != "" {
			v.Set("after", after)
		}
		var page events.ItemsResponse
		if err := lc.do(e.ctx, "GET", "/v1/queue/items?"+v.Encode(), nil, &page); err != nil {
			return apiExit(err)
		}
		all.Items = append(all.Items, page.Items...)
		all.Next, after = page.Next, page.Next
		if page.Next == "" || len(page.Items) == 0 { // an empty page with a cursor would loop for ever
			break
		}
	}
	for i := range all.Items {
		all.Items[i].Key = shownKey(c, all.Items[i].Key)
	}
	if all.Next != "" && !c.Bool("show-keys") {
		if i := lastColon(all.Next); i > 0 {
			all.Next = shownKey(c, all.Next[:i]) + all.Next[i:]
		}
	}
	if c.Bool("json") {
		return printJSON(e, all)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	if state == "failed" {
		fmt.Fprintln(tw, "ROUTING KEY\tSEQ\tAGE\tSIZE\tFAILED\tSTATUS\tATTEMPTS\tREASON")
	} else {
		fmt.Fprintln(tw, "ROUTING KEY\tSEQ\tAGE\tSIZE")
	}
	for _, it := range all.Items {
		age := "-"
		if !it.EnqueuedAt.IsZero() {
			age = now.Sub(it.EnqueuedAt).Round(time.Second).String()
		}
		if state == "failed" {
			status, attempts := "-", "-"
			if it.StatusCode != 0 {
				status = strconv.Itoa(it.StatusCode)
			}
			if it.Attempts != 0 {
				attempts = strconv.Itoa(it.Attempts)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", it.Key, it.Seq, age, size(it.Size),
				it.FailedAt.UTC().Format(time.RFC3339), status, attempts, it.Reason)
		} else {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", it.Key, it.Seq, age, size(it.Size))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if all.Next != "" {
		_, err = fmt.Fprintf(e.stdout, "\nmore: courier queue ls --after '%s'\n", all.Next)
	} else if len(all.Items) == 0 {
		_, err = fmt.Fprintf(e.stdout, "no %s items\n", state)
	}
	return err
}

func lastColon(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			return i
		}
	}
	return -1
}

func queueShow(c *ucli.Context) error {
	args, err := interspersedFlags(c)
	if err != nil {
		return err
	}
	key := c.String("routing-key")
	if s := c.String("seq"); s != "" && len(args) == 0 {
		args = []string{s}
	}
	if len(args) != 1 {
		return usageError("queue show takes one SEQ (as courier queue ls shows it) and -k KEY")
	}
	seq, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil {
		return usageError("SEQ %q is not a number; courier queue ls shows them", args[0])
	}
	if key == "" {
		return usageError("queue show needs -k KEY, the item's routing key")
	}
	e, lc, err := localAPI(c, "queue")
	if err != nil {
		return err
	}
	var it events.ItemResponse
	v := url.Values{"routing_key": {key}, "seq": {strconv.FormatUint(seq, 10)}}
	if err := lc.do(e.ctx, "GET", "/v1/queue/item?"+v.Encode(), nil, &it); err != nil {
		return apiExit(err)
	}
	it.Key = shownKey(c, it.Key)
	if !c.Bool("show-keys") && it.Payload != nil {
		it.Payload = events.RedactPayload(it.Payload)
	}
	if c.Bool("json") {
		return printJSON(e, it)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "routing key\t%s\nseq\t%d\nstate\t%s\nsize\t%s\n", it.Key, it.Seq, it.State, size(it.Size))
	if !it.EnqueuedAt.IsZero() {
		fmt.Fprintf(tw, "enqueued\t%s\n", it.EnqueuedAt.UTC().Format(time.RFC3339Nano))
	}
	if it.State == "failed" {
		fmt.Fprintf(tw, "failed\t%s\nstatus\t%d\nattempts\t%d\nreason\t%s\n", it.FailedAt.UTC().Format(time.RFC3339Nano), it.StatusCode, it.Attempts, it.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if it.Payload != nil {
		var pretty any
		if json.Unmarshal(it.Payload, &pretty) == nil {
			b, _ := json.MarshalIndent(pretty, "", "  ")
			_, err = fmt.Fprintf(e.stdout, "\n%s\n", b)
			return err
		}
	}
	_, err = fmt.Fprintf(e.stdout, "\npayload (%d bytes, not JSON, base64): %s\n", len(it.PayloadBase64), base64.StdEncoding.EncodeToString(it.PayloadBase64))
	return err
}

func queuePurge(c *ucli.Context) error {
	if c.NArg() > 0 {
		return usageError("queue purge takes no arguments (got %q); use -k KEY, --seq N, --older-than D or --all", c.Args().First())
	}
	if st := c.String("state"); st != "failed" {
		return usageError("--state %q: only dead letters (failed) are purged; pending items are what courier promised to deliver", st)
	}
	key, all := c.String("routing-key"), c.Bool("all")
	switch {
	case key == "" && !all:
		return usageError("say which dead letters to drop: -k KEY, or --all for every key")
	case key != "" && all:
		return usageError("-k and --all together: give one")
	}
	req := events.PurgeRequest{RoutingKey: key, All: all, OlderThan: c.String("older-than")}
	if s := c.String("seq"); s != "" {
		if all {
			return usageError("--seq needs -k KEY, not --all")
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return usageError("--seq %q is not a number; courier queue ls shows them", s)
		}
		req.Seq = &n
	}
	if req.OlderThan != "" {
		if _, err := events.ParseAge(req.OlderThan); err != nil {
			return usageError("--older-than: %v", err)
		}
	}
	// Checked last, so that a mistyped selection is named before the
	// operator is asked to confirm it.
	if !c.Bool("yes") {
		return usageError("queue purge drops dead letters for good: add --yes to confirm (courier queue ls --state failed lists them)")
	}
	e, lc, err := localAPI(c, "queue")
	if err != nil {
		return err
	}
	var out events.PurgeResponse
	if err := lc.do(e.ctx, "POST", "/v1/queue/purge", req, &out); err != nil {
		return apiExit(err)
	}
	for i := range out.Keys {
		out.Keys[i].Key = shownKey(c, out.Keys[i].Key)
	}
	if c.Bool("json") {
		return printJSON(e, out)
	}
	for _, k := range out.Keys {
		fmt.Fprintf(e.stdout, "%s\t%d\n", k.Key, k.Dropped)
	}
	_, err = fmt.Fprintf(e.stdout, "dropped %d dead letter(s), %s\n", out.Dropped, size(out.Bytes))
	return err
}
