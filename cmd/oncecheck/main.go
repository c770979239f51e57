// Command oncecheck proves or refutes a message handler's exactly-once
// guarantee. See `oncecheck help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/pgstore"
	"github.com/oncecheck/oncecheck/adapters/rediscache"
	"github.com/oncecheck/oncecheck/campaign"
	"github.com/oncecheck/oncecheck/catalogue"
)

// Exit codes (docs/design.md, section 9).
const (
	exitPass         = 0
	exitViolation    = 1
	exitUsage        = 2
	exitInconclusive = 3
	exitInterrupted  = 130 // stopped by Ctrl-C (SIGINT)
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// usageError is a mistake in the command line: exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// builtin is the tool's catalogue: the built-in models and strategies, and
// both backends (pg through $ONCECHECK_PG unless --pg names a server).
func builtin() catalogue.Catalogue {
	return catalogue.Builtin().WithBackends(pgstore.Backend{}).WithCaches(rediscache.Backend{})
}

// asUsage turns an error of the library that is the command line's fault
// into a usage error naming the flag at fault; nil when err is not one.
func asUsage(err error) error {
	var ce *campaign.ConfigError
	if errors.As(err, &ce) {
		return usagef("%s: %s", flagFor(ce.Field), ce.Problem)
	}
	var ue *catalogue.UnknownError
	if errors.As(err, &ue) {
		return usagef("--%s: %v", ue.Kind, ue)
	}
	var un *adapters.UnsupportedError
	if errors.As(err, &un) {
		return usagef("%v", err)
	}
	return nil
}

// flagFor names the flag that sets a field of campaign's configuration.
func flagFor(field string) string {
	switch field {
	case "Columns":
		return "--faults"
	case "CheckDeterminism":
		return "--check-determinism"
	case "MaxMessages":
		return "--max-messages"
	case "MaxFaults":
		return "--max-faults"
	case "FreeRunning":
		return "--free-running"
	}
	return "--" + strings.ToLower(field)
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, cat catalogue.Catalogue, args []string, stdout, stderr io.Writer) (int, error)
}

var commands []command

func init() {
	commands = []command{
		{"matrix", "run every strategy under every fault kind and print the table of verdicts", matrixCmd},
		{"run", "generate workloads and faults, run a strategy, check exactly-once, shrink and save a failure", runCmd},
		{"check", "re-check a saved history offline", checkCmd},
		{"replay", "re-run the plan of a saved history and check the new history", replayCmd},
		{"show", "print a saved history: verdict, explanation, workload, faults and timeline", showCmd},
		{"list", "list the strategies, models, fault kinds and backends", listCmd},
		{"completion", "print a shell completion script (bash, zsh or fish)", completionCmd},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			return run(ctx, []string{args[1], "--help"}, stdout, stderr)
		}
		mainUsage(stdout)
		return exitPass
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		code, err := c.run(ctx, builtin(), args[1:], stdout, stderr)
		if errors.Is(err, flag.ErrHelp) {
			return exitPass
		}
		if err != nil {
			fmt.Fprintf(stderr, "oncecheck %s: %v\n", c.name, err)
			var ue usageError
			if errors.As(err, &ue) {
				return exitUsage
			}
			if code == exitPass {
				code = exitInconclusive
			}
		}
		return code
	}
	fmt.Fprintf(stderr, "oncecheck: unknown command %q (run 'oncecheck help')\n", args[0])
	return exitUsage
}

func mainUsage(w io.Writer) {
	fmt.Fprintf(w, `oncecheck proves or refutes a message handler's exactly-once guarantee.

Usage:
  oncecheck <command> [flags]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, `
Examples:
  oncecheck matrix
  oncecheck run --strategy naive --faults redelivery --runs 200
  oncecheck run --strategy outbox --faults redelivery,crash --runs 2000
  oncecheck check 'oncecheck-results/*.jsonl'
  oncecheck replay oncecheck-results/naive-orders-redelivery-duplicate-42.jsonl
  oncecheck show oncecheck-results/naive-orders-redelivery-duplicate-42.jsonl

Exit codes: 0 pass, 1 violation found, 2 usage error or unreadable input, 3 inconclusive
(check with several files: the worst, in the order 2, 1, 3, 0),
130 interrupted (Ctrl-C stops after the current run and prints what was found).
Run 'oncecheck <command> --help' for the flags of a command.
`)
}

// newFlagSet returns a flag set whose errors are returned, not printed and
// exited on, with usage text built from the summary and examples.
func newFlagSet(name, synopsis, examples string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: oncecheck %s\n\nFlags:\n", synopsis)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		fmt.Fprintf(stdout, "\nExamples:\n%s", examples)
	}
	return fs
}

// parse parses flags, allowing flags after positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.Usage()
				return nil, err
			}
			return nil, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// self is how the user invoked this tool, for printed commands.
func self() string {
	exe := os.Args[0]
	if strings.Contains(exe, "go-build") {
		return "go run ./cmd/oncecheck"
	}
	return filepath.Base(exe)
}
