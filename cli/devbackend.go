package cli

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"courier/backend/devserver"
	"courier/config"
)

// devBackendCommand runs backend/devserver, the reference backend, for
// trying the agent on one machine and for end-to-end tests. Hidden: it is
// not part of the product.
func devBackendCommand() *ucli.Command {
	return &ucli.Command{
		Name:   "dev-backend",
		Usage:  "run the reference backend (PROTOCOL.md §1) in the foreground, for trying the agent and for tests",
		Hidden: true,
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "listen", Value: "127.0.0.1:8080", Usage: "address to serve on; the admin API (/admin/) has no authentication, so keep it on loopback"},
			&ucli.StringFlag{Name: "dir", Required: true, Usage: "folder that keeps the backend's state (created when missing; a restart carries on from it)"},
			&ucli.StringSliceFlag{Name: "enroll-code", Usage: "an enroll code to accept (repeat the flag for more); without one, a fresh code is made unless an unused one exists"},
		},
		Action: func(c *ucli.Context) error {
			if c.Args().Present() {
				return usageError("dev-backend takes no arguments, got %q", c.Args().First())
			}
			e, err := setup(c, "dev-backend", false)
			if err != nil {
				return err
			}
			srv, err := devserver.New(devserver.Options{Dir: c.String("dir"), Logger: e.log})
			if err != nil {
				return err
			}
			given := c.StringSlice("enroll-code")
			for _, code := range given {
				if _, err := srv.AddEnrollCode(code, nil); err != nil && !errors.Is(err, devserver.ErrCodeExists) {
					return usageError("--enroll-code: %v", err)
				}
			}
			if len(given) == 0 && len(usableCodes(srv.EnrollCodes())) == 0 {
				if _, err := srv.AddEnrollCode("", nil); err != nil {
					return err
				}
			}

			listen := c.String("listen")
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("dev-backend: cannot listen on %s: %w", listen, err)
			}
			if !config.IsLoopback(listen) {
				e.log.Warn().Str("listen", listen).Msg("the admin API (/admin/) has no authentication and is reachable from other machines")
			}
			url := "http://" + ln.Addr().String()
			printDevBackend(e, url, c.String("dir"), srv.EnrollCodes(), given)

			ctx, stop := notifyShutdown(c.Context, e)
			defer stop()
			return srv.Serve(ctx, ln)
		},
	}
}

// usableCodes are the codes an agent can still enroll with.
func usableCodes(codes []devserver.EnrollCode) []devserver.EnrollCode {
	var out []devserver.EnrollCode
	t := time.Now()
	for _, c := range codes {
		if c.UsedBy == "" && (c.ExpiresAt == nil || t.Before(*c.ExpiresAt)) {
			out = append(out, c)
		}
	}
	return out
}

func printDevBackend(e *env, url, dir string, codes []devserver.EnrollCode, given []string) {
	var b strings.Builder
	fmt.Fprintf(&b, "courier dev-backend listening on %s (state in %s)\n", url, dir)
	usable := usableCodes(codes)
	if len(usable) > 0 {
		b.WriteString("enroll codes accepted (each enrolls one agent):\n")
		for _, c := range usable {
			fmt.Fprintf(&b, "  %s\n", c.Code)
		}
		fmt.Fprintf(&b, "enroll an agent: courier --root DIR enroll %s --backend-url %s --no-service\n", usable[0].Code, url)
		b.WriteString("  (--root: the agent's own folder; --no-service: run `courier --root DIR service-run` yourself instead of installing the systemd unit)\n")
	} else {
		b.WriteString("no enroll code is left; restart with --enroll-code CODE to add one\n")
	}
	for _, g := range given {
		for _, c := range codes {
			if c.Code == g && c.UsedBy != "" {
				fmt.Fprintf(&b, "enroll code %s was used already (by %s)\n", g, c.UsedBy)
			}
		}
	}
	fmt.Fprintf(&b, "admin API: GET %s/ lists its endpoints (under %s/admin/...); Ctrl-C stops\n", url, url)
	_, _ = fmt.Fprint(e.stdout, b.String())
}
