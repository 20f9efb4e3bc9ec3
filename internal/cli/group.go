package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
)

// group is a command whose first argument names one of its subcommands
// (skiff lab up, skiff token create).
type group struct {
	name        string // the command's name
	description string
	subs        []subcommand
	example     string
}

// subcommand is one subcommand of a group.
type subcommand struct {
	name, summary string
	hidden        bool // started by skiff itself; not listed
	run           func(ctx context.Context, e *env, args []string) error
}

// run runs the subcommand args[0] names with the rest of args. --help, -h
// and help print the group's usage and return flag.ErrHelp.
func (g *group) run(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		g.usage(e.stderr)
		return usageError{fmt.Errorf("expected a subcommand: %s", g.names())}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		g.usage(e.stdout)
		return flag.ErrHelp
	}
	for _, s := range g.subs {
		if s.name == args[0] {
			return s.run(ctx, e, args[1:])
		}
	}
	g.usage(e.stderr)
	return usageError{fmt.Errorf("unknown subcommand %q: use %s", args[0], g.names())}
}

// names lists the listed subcommands' names: "up or down".
func (g *group) names() string {
	var names []string
	for _, s := range g.subs {
		if !s.hidden {
			names = append(names, s.name)
		}
	}
	switch len(names) {
	case 0:
		return ""
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// usage prints the group's description, subcommands and example.
func (g *group) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: skiff %s <subcommand> [flags]\n\n%s\n\nSubcommands:\n", g.name, strings.TrimSpace(g.description))
	for _, s := range g.subs {
		if !s.hidden {
			fmt.Fprintf(w, "  %-12s %s\n", s.name, s.summary)
		}
	}
	fmt.Fprintf(w, "\nRun 'skiff %s <subcommand> --help' for a subcommand's flags.\n", g.name)
	if g.example != "" {
		fmt.Fprintf(w, "\nExample:\n%s\n", g.example)
	}
}
