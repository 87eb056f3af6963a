package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	ucli "github.com/urfave/cli/v2"

	"courier/actors"
	"courier/config"
	"courier/integrations"
)

func validateCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "validate-config",
		Usage: "check that an integration's config is valid and that what it names can be reached; prints the result as JSON and exits 1 when invalid",
		Flags: integrationFlags(),
		Action: func(c *ucli.Context) error {
			e, err := setup(c, "validate-config", true)
			if err != nil {
				return err
			}
			var v integrations.Validation
			inst, closer, err := newIntegration(c, e)
			var ce *configError
			switch {
			case errors.As(err, &ce):
				// A config that does not decode is an answer, as the
				// backend's validate-config command gives it: valid false,
				// with the problem (key, line, the key meant).
				v = integrations.Validation{Valid: false, Errors: []string{ce.Error()}}
			case err != nil:
				return err
			default:
				defer closer.Close()
				// The backend's validate-config command runs the same.
				v, err = actors.Validate(c.Context, inst)
				if err != nil {
					return fmt.Errorf("validation crashed: %w", err)
				}
			}
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(v); err != nil {
				return err
			}
			if !v.Valid {
				return withCode(ExitFailure, fmt.Errorf("config is not valid: %d problem(s)", len(v.Errors)))
			}
			return nil
		},
	}
}

func onboardCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "export-onboard-data",
		Usage: "list an integration's users, repos or projects into a file (NDJSON)",
		Flags: append(integrationFlags(),
			&ucli.StringFlag{Name: "object-type", Usage: "users, repos or projects", Required: true},
			&ucli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "the NDJSON `FILE` to write (- for stdout)", Required: true},
		),
		Action: func(c *ucli.Context) error {
			e, err := setup(c, "export-onboard-data", true)
			if err != nil {
				return err
			}
			typ := c.String("object-type")
			if err := actors.CheckObjectType(typ); err != nil {
				return usageError("--object-type %v", err)
			}
			inst, closer, err := newIntegration(c, e)
			if err != nil {
				return err
			}
			defer closer.Close()
			n, err := writeObjects(c.Context, inst, typ, c.String("output"), e)
			if errors.Is(err, integrations.ErrUnsupportedObject) {
				return withCode(ExitUsage, err)
			}
			if err != nil {
				return err
			}
			if c.String("output") != "-" {
				_, err = fmt.Fprintf(e.stdout, "wrote %d %s to %s\n", n, typ, c.String("output"))
			}
			return err
		},
	}
}

// writeObjects writes one JSON object per line to a temporary file and
// renames it into place, so a failed listing never leaves half a file.
func writeObjects(ctx context.Context, inst integrations.Integration, typ, path string, e *env) (int, error) {
	var f *os.File
	if path == "-" {
		f = os.Stdout
	} else {
		var err error
		if f, err = os.CreateTemp(filepath.Dir(path), ".onboard-*"); err != nil {
			return 0, err
		}
		defer os.Remove(f.Name())
		defer f.Close()
	}
	w := bufio.NewWriter(f)
	if path == "-" {
		w = bufio.NewWriter(e.stdout)
	}
	enc := json.NewEncoder(w)
	n := 0
	// The backend's export-onboard-data command lists the same way.
	err := actors.ListObjects(ctx, inst, typ, func(o integrations.Object) error {
		n++
		return enc.Encode(o)
	})
	if err != nil {
		return n, err
	}
	if err := w.Flush(); err != nil || path == "-" {
		return n, err
	}
	if err := f.Close(); err != nil {
		return n, err
	}
	return n, os.Rename(f.Name(), path)
}

// newIntegration builds an instance from --integration/--config for the
// commands that run it directly, without the export runtime.
// The closer ends its log file.
func newIntegration(c *ucli.Context, e *env) (integrations.Integration, io.Closer, error) {
	is, err := integrationFromFlags(c)
	if err != nil {
		return nil, nil, err
	}
	reg, err := integrations.Lookup(is.Type)
	if err != nil {
		return nil, nil, withCode(ExitUsage, err)
	}
	if err := e.layout.EnsureDirs(); err != nil {
		return nil, nil, err
	}
	log, closer := e.integrationLogger(is.ID)
	inst, err := reg.New(integrations.Options{ID: is.ID, Logger: log, CacheDir: filepath.Join(e.layout.Cache(), config.SafeName(is.ID)), BaseDir: e.baseDir()}, is.Config)
	if err != nil {
		_ = closer.Close()
		return nil, nil, err
	}
	return inst, closer, nil
}
