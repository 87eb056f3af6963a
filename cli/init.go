package cli

import (
	"errors"
	"fmt"

	ucli "github.com/urfave/cli/v2"

	"courier/config"
)

func initCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "init",
		Usage: "write a commented config.yaml with defaults and a fresh local token",
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "force", Usage: "overwrite an existing config.yaml"},
		},
		Action: func(c *ucli.Context) error {
			e, err := setup(c, "init", false)
			if err != nil {
				return err
			}
			if err := e.layout.EnsureDirs(); err != nil {
				return err
			}
			path := e.layout.Config()
			if _, err := config.Init(path, c.Bool("force")); err != nil {
				if errors.Is(err, config.ErrExists) {
					return withCode(ExitFailure, fmt.Errorf("%s exists already; pass --force to overwrite it", path))
				}
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "wrote %s\n", path)
			return err
		},
	}
}
