// Command courier is an on-premise agent: it relays events and runs exports
// durably through one Pebble-backed queue. See README.md.
package main

import (
	"context"
	"os"

	"courier/cli"
)

func main() {
	os.Exit(cli.Run(context.Background(), os.Args, os.Stdin, os.Stdout, os.Stderr))
}
