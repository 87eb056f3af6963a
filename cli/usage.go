package cli

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	ucli "github.com/urfave/cli/v2"
)

const globalCategory = "GLOBAL (before or after the command's name)"

// appFlags are the global flags as the app defines them: with their
// environment variables and defaults. Every command and subcommand accepts
// them after its name as well (PROTOCOL §3): scripts and units write
// `courier init --root X` as often as `courier --root X init`.
func appFlags(defaultRoot string) []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "root", Usage: "the agent's folder (config, queue, logs)", EnvVars: []string{"COURIER_ROOT"}, Value: defaultRoot},
		&ucli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error", EnvVars: []string{"COURIER_LOG_LEVEL"}, Value: "info"},
		&ucli.StringFlag{Name: "log-format", Usage: "console or json (default: console on a terminal, json otherwise)", EnvVars: []string{"COURIER_LOG_FORMAT"}},
	}
}

// commandGlobalFlags are the copies each command carries. They have no
// default and no environment variable on purpose: an empty value means
// "not given here", so globalString falls through to the app's flag,
// which holds the environment and the default. A copy with the env var
// would let COURIER_ROOT beat a --root written before the command.
func commandGlobalFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "root", Usage: "the agent's folder (env COURIER_ROOT)", Category: globalCategory},
		&ucli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error (env COURIER_LOG_LEVEL)", Category: globalCategory},
		&ucli.StringFlag{Name: "log-format", Usage: "console or json (env COURIER_LOG_FORMAT)", Category: globalCategory},
	}
}

// globalString is a global flag's value: the innermost command that was
// given it wins (`courier --root A service install --root B` is B), then
// the app's flag, which holds COURIER_* and the default.
func globalString(c *ucli.Context, name string) string {
	for _, cc := range c.Lineage() {
		if v := cc.String(name); v != "" {
			return v
		}
	}
	return ""
}

// prepareCommands gives every command, at every depth, the global flags,
// usage errors with exit 2 in one format, required flags checked in one
// line, and, for a command with subcommands, an answer to an unknown one.
//
// path is the parent's full name, "" for the app's commands, whose
// HelpName urfave/cli prefixes with "courier" itself.
func prepareCommands(cmds []*ucli.Command, path string) {
	for _, c := range cmds {
		c.HelpName = strings.TrimSpace(path + " " + c.Name)
		c.Flags = append(c.Flags, commandGlobalFlags()...)
		c.OnUsageError = usageExit
		if required := takeRequired(c.Flags); len(required) > 0 {
			c.Action = checkRequired(required, c.Action)
		}
		if len(c.Subcommands) > 0 && c.Action == nil {
			c.Action = subcommandAction
		}
		prepareCommands(c.Subcommands, "courier "+c.HelpName)
	}
}

// takeRequired clears Required on flags and returns them. urfave/cli's
// own check prints the whole help and exits 1; checkRequired says in one
// line what is missing and exits 2.
func takeRequired(flags []ucli.Flag) []ucli.Flag {
	var out []ucli.Flag
	for _, f := range flags {
		switch f := f.(type) {
		case *ucli.StringFlag:
			if f.Required {
				f.Required = false
				f.Usage += " (required)"
				out = append(out, f)
			}
		case *ucli.StringSliceFlag:
			if f.Required {
				f.Required = false
				f.Usage += " (required)"
				out = append(out, f)
			}
		}
	}
	return out
}

func checkRequired(required []ucli.Flag, action ucli.ActionFunc) ucli.ActionFunc {
	return func(c *ucli.Context) error {
		var missing []string
		for _, f := range required {
			if !c.IsSet(f.Names()[0]) {
				missing = append(missing, flagNames(f))
			}
		}
		if len(missing) > 0 {
			s := ""
			if len(missing) > 1 {
				s = "s"
			}
			return usageError("missing flag%s %s (%s --help shows the flags)", s, strings.Join(missing, ", "), c.Command.HelpName)
		}
		return action(c)
	}
}

// flagNames is "--routing-key (-k)": how a user types the flag.
func flagNames(f ucli.Flag) string {
	names := f.Names()
	s := dashed(names[0])
	if len(names) > 1 {
		var alt []string
		for _, n := range names[1:] {
			alt = append(alt, dashed(n))
		}
		s += " (" + strings.Join(alt, ", ") + ")"
	}
	return s
}

// dashed is a flag's name as typed: -k, --routing-key. Go's flag package
// prints every flag with one dash, which no one types for a long name.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// appAction answers `courier` alone with the help and `courier statu`
// with the command it most likely meant.
func appAction(c *ucli.Context) error {
	if !c.Args().Present() {
		return ucli.ShowAppHelp(c)
	}
	return unknownCommand(c.Args().First(), "courier", c.App.Commands)
}

// subcommandAction does the same for a command with subcommands.
func subcommandAction(c *ucli.Context) error {
	if !c.Args().Present() {
		return ucli.ShowSubcommandHelp(c)
	}
	return unknownCommand(c.Args().First(), c.Command.HelpName, c.Command.Subcommands)
}

func unknownCommand(name, path string, cmds []*ucli.Command) error {
	var names []string
	for _, c := range cmds {
		if !c.Hidden {
			names = append(names, c.Names()...)
		}
	}
	msg := fmt.Sprintf("unknown command %q for %s", name, path)
	if s := closest(name, names); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return usageError("%s (%s --help lists the commands)", msg, path)
}

// helpCommand is `courier help [command [subcommand]]`: the help of what it
// names, or the unknown-command answer with exit 2.
func helpCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "help",
		Usage:     "show the commands, or the flags of one command",
		ArgsUsage: "[command [subcommand]]",
		Action: func(c *ucli.Context) error {
			cmds, path := c.App.Commands, "courier"
			var cur *ucli.Command
			for _, a := range c.Args().Slice() {
				if strings.HasPrefix(a, "-") {
					// `help init --root X`: flags after the names are the
					// global ones; they change nothing here.
					break
				}
				next := findCommand(cmds, a)
				if next == nil {
					return unknownCommand(a, path, cmds)
				}
				cur, cmds, path = next, next.Subcommands, next.HelpName
			}
			if cur == nil {
				return ucli.ShowAppHelp(c)
			}
			tmpl := cur.CustomHelpTemplate
			if tmpl == "" {
				tmpl = ucli.CommandHelpTemplate
				if len(cur.Subcommands) > 0 {
					tmpl = ucli.SubcommandHelpTemplate
				}
			}
			ucli.HelpPrinter(c.App.Writer, tmpl, cur)
			return nil
		},
	}
}

func findCommand(cmds []*ucli.Command, name string) *ucli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

var (
	notDefined  = regexp.MustCompile(`^flag provided but not defined: -+(.+)$`)
	needsValue  = regexp.MustCompile(`^flag needs an argument: -+(.+)$`)
	badValue    = regexp.MustCompile(`^invalid (boolean )?value (".*") for (?:flag )?-+([^:]+): (.*)$`)
	badSyntax   = regexp.MustCompile(`^bad flag syntax: (.*)$`)
	helpPathFor = func(c *ucli.Context) string {
		if c != nil && c.Command != nil && c.Command.HelpName != "" && c.Command.Name != "" {
			return c.Command.HelpName
		}
		return "courier"
	}
)

// usageExit is urfave/cli's OnUsageError for the app and every command:
// one line naming the flag as it is typed (--key, not -key), a guess at
// the flag meant, and exit 2.
func usageExit(c *ucli.Context, err error, _ bool) error {
	path := helpPathFor(c)
	msg := err.Error()
	switch {
	case notDefined.MatchString(msg):
		name := notDefined.FindStringSubmatch(msg)[1]
		msg = fmt.Sprintf("unknown flag %s for %s", dashed(name), path)
		if s := closest(name, commandFlagNames(c)); s != "" {
			msg += fmt.Sprintf("; did you mean %s?", dashed(s))
		}
	case needsValue.MatchString(msg):
		msg = fmt.Sprintf("flag %s needs a value", dashed(needsValue.FindStringSubmatch(msg)[1]))
	case badValue.MatchString(msg):
		m := badValue.FindStringSubmatch(msg)
		msg = fmt.Sprintf("flag %s: invalid value %s: %s", dashed(m[3]), m[2], m[4])
	case badSyntax.MatchString(msg):
		msg = fmt.Sprintf("bad flag syntax: %s", badSyntax.FindStringSubmatch(msg)[1])
	default:
		return withCode(ExitUsage, err)
	}
	return withCode(ExitUsage, fmt.Errorf("%s (%s --help shows the flags)", msg, path))
}

// commandFlagNames are the names of the flags the command of c takes (the
// app's when c is the app's), hidden ones left out.
func commandFlagNames(c *ucli.Context) []string {
	var flags []ucli.Flag
	switch {
	case c == nil:
	case c.Command != nil && c.Command.Name != "":
		flags = c.Command.Flags
	case c.App != nil:
		flags = c.App.Flags
	}
	var names []string
	for _, f := range flags {
		if vf, ok := f.(ucli.VisibleFlag); ok && !vf.IsVisible() {
			continue
		}
		names = append(names, f.Names()...)
	}
	return names
}

// closest is the candidate a user most likely meant by name: one whose
// words include it (--key for --routing-key), else one within a third of
// its length in edits (one at least); "" when nothing is close.
func closest(name string, candidates []string) string {
	name = strings.ToLower(name)
	if len(name) < 3 {
		// -x: any one-letter flag is one edit away, which says nothing.
		return ""
	}
	best, bestDist := "", max(1, (len(name)+1)/3)+1
	for _, c := range candidates {
		if len(c) > 1 && slices.Contains(strings.Split(c, "-"), name) {
			return c
		}
		if d := editDistance(name, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// interspersedFlags returns the command's positional arguments after
// applying the flags found among them: urfave/cli v2 stops parsing flags
// at the first argument, and the documented orders put flags after it
// (`courier enroll CODE --backend-url URL`, `courier queue show SEQ -k KEY
// --root X`). Every command that takes arguments reads them through here.
// "--" ends the flags.
func interspersedFlags(c *ucli.Context) ([]string, error) {
	var pos []string
	args := c.Args().Slice()
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(pos, args[i+1:]...), nil
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := commandFlag(c.Command, name)
		if f == nil {
			return nil, usageExit(c, fmt.Errorf("flag provided but not defined: -%s", name), true)
		}
		if _, isBool := f.(*ucli.BoolFlag); isBool {
			if !hasValue {
				value = "true"
			}
		} else if !hasValue {
			if i+1 >= len(args) {
				return nil, usageExit(c, fmt.Errorf("flag needs an argument: -%s", name), true)
			}
			i++
			value = args[i]
		}
		// Each alias is its own entry in urfave/cli's flag set, synced only
		// by its own parser: set them all, so that -k reads as --routing-key.
		for _, n := range f.Names() {
			if err := c.Set(n, value); err != nil {
				return nil, usageError("invalid value %q for flag %s: %v", value, a, err)
			}
		}
	}
	return pos, nil
}

func commandFlag(cmd *ucli.Command, name string) ucli.Flag {
	if cmd == nil {
		return nil
	}
	for _, f := range cmd.Flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}
