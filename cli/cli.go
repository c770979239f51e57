// Package cli is oncecheck's command line, over a catalogue of one's own.
//
// cmd/oncecheck is Main over the built-in models and strategies. A team
// whose model and handler live in its own module writes a main of a few
// lines that passes them in, and gets every command (run, matrix, check,
// show, replay, ...) for its own histories:
//
//	func main() {
//		cat := catalogue.Builtin().WithModels(counter.Model).WithStrategies(counter.Strategy)
//		os.Exit(cli.Main(os.Args[1:], cat))
//	}
//
// docs/writing-an-adapter.md walks through it.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"

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
	exitInterrupted  = 130 // stopped by SIGINT (Ctrl-C); 143 for SIGTERM
	exitTerminated   = 143
)

// Main runs the command line on args (os.Args[1:]) with the models,
// strategies and backends of cat, and returns the exit code for os.Exit.
// An empty cat is catalogue.Builtin(); the pg backend (pgstore.Backend,
// at $ONCECHECK_PG unless --pg names a server) is added when cat has none,
// and so is the redis cache (rediscache.Backend, at $ONCECHECK_REDIS).
// SIGINT and SIGTERM stop every command alike: after the current run, with
// a summary, nothing temporary left behind, exit 130 or 143; a second
// signal ends the process at once.
func Main(args []string, cat catalogue.Catalogue) int {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			signal.Stop(sigs) // a second signal ends the process at once
			cancel(interrupt{s})
		case <-ctx.Done():
		}
	}()
	return run(ctx, args, os.Stdout, os.Stderr, withDefaults(cat))
}

// interrupt is the cause of a context cancelled by a signal.
type interrupt struct{ sig os.Signal }

func (i interrupt) Error() string { return "interrupted by " + signalName(i.sig) }

func signalName(s os.Signal) string {
	if s == syscall.SIGTERM {
		return "SIGTERM"
	}
	return "SIGINT"
}

// interruptedCode is the exit code of a command stopped by ctx: 143 for
// SIGTERM, 130 otherwise.
func interruptedCode(ctx context.Context) int {
	var i interrupt
	if errors.As(context.Cause(ctx), &i) && i.sig == syscall.SIGTERM {
		return exitTerminated
	}
	return exitInterrupted
}

// withDefaults fills in the built-ins for an empty catalogue and adds the
// pg backend and the redis cache when it has none.
func withDefaults(cat catalogue.Catalogue) catalogue.Catalogue {
	if len(cat.Models) == 0 && len(cat.Strategies) == 0 && len(cat.Backends) == 0 {
		cat = catalogue.Builtin()
	}
	if _, err := cat.Backend("pg"); err != nil {
		cat = cat.WithBackends(pgstore.Backend{})
	}
	if _, err := cat.Cache("redis"); err != nil {
		cat = cat.WithCaches(rediscache.Backend{})
	}
	return cat
}

// usageError is a mistake in the command line: exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

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
	case "LockTimeout":
		return "--lock-timeout"
	}
	return "--" + strings.ToLower(field)
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, cat catalogue.Catalogue, args []string, stdout, stderr io.Writer) (int, error)
}

// commands lists the commands in the order of the usage text.
func commands() []command {
	return []command{
		{"matrix", "run every strategy under every fault kind and print the table of verdicts", matrixCmd},
		{"run", "generate workloads and faults, run a strategy, check exactly-once, shrink and save a failure", runCmd},
		{"service", "start a consumer service (any language) as processes on a real NATS and PostgreSQL, fault it, check exactly-once", serviceCmd},
		{"check", "re-check a saved history offline", checkCmd},
		{"replay", "re-run the plan of a saved history and check the new history", replayCmd},
		{"show", "print a saved history: verdict, explanation, workload, faults and timeline", showCmd},
		{"merge", "merge the JSON or JUnit outputs of the shards of a run or matrix (--shard K/N)", mergeCmd},
		{"list", "list the strategies, models, fault kinds and backends", listCmd},
		{"completion", "print a shell completion script (bash, zsh or fish)", completionCmd},
	}
}

// run runs one command line. Its output goes through a filter that masks
// DSN passwords and escapes control characters (see output.go).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, cat catalogue.Catalogue) int {
	secrets := passwords(args)
	stdout, stderr = newOutput(stdout, secrets), newOutput(stderr, secrets)
	if len(args) == 0 {
		shortUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			return run(ctx, []string{args[1], "--help"}, stdout, stderr, cat)
		}
		mainUsage(stdout)
		return exitPass
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, version())
		return exitPass
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		code, err := c.run(ctx, cat, args[1:], stdout, stderr)
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
		if code == exitInterrupted {
			code = interruptedCode(ctx)
		}
		return code
	}
	fmt.Fprintf(stderr, "oncecheck: unknown command %q%s (run 'oncecheck help')\n", args[0], didYouMean(args[0], commandNames()))
	return exitUsage
}

func commandNames() []string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return names
}

// shortUsage is what a command line without a command gets, on stderr.
func shortUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: oncecheck <command> [flags]   (commands: %s)\nRun 'oncecheck help' for more.\n", strings.Join(commandNames(), ", "))
}

func mainUsage(w io.Writer) {
	fmt.Fprintf(w, `oncecheck proves or refutes a message handler's exactly-once guarantee.

Usage:
  oncecheck <command> [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, `
Examples:
  oncecheck matrix
  oncecheck run --strategy naive --faults redelivery --runs 200
  oncecheck run --strategy outbox --faults redelivery,crash --runs 2000
  oncecheck check 'oncecheck-results/*.jsonl'
  oncecheck replay oncecheck-results/naive-orders-redelivery-duplicate-mem-42.jsonl
  oncecheck show oncecheck-results/naive-orders-redelivery-duplicate-mem-42.jsonl

Exit codes: 0 pass, 1 violation found, 2 usage error or unreadable input, 3 inconclusive
(check with several files: the worst, in the order 2, 1, 3, 0),
130 interrupted by SIGINT (Ctrl-C), 143 by SIGTERM: every command stops after its current
run, prints what was found and leaves nothing temporary behind.
Run 'oncecheck <command> --help' for the flags of a command, 'oncecheck --version' for the version.
`)
}

// version names this build: oncecheck's module version (or its VCS
// revision) and the Go toolchain.
func version() string {
	const module = "github.com/oncecheck/oncecheck"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "oncecheck (unknown version)"
	}
	v := ""
	if bi.Main.Path == module {
		v = bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == module {
			v = d.Version
			if d.Replace != nil {
				v += " => " + d.Replace.Path
			}
		}
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if v == "" || v == "(devel)" {
		v = "devel"
		if rev != "" {
			v += " " + rev[:min(12, len(rev))] + dirty
		}
	}
	return fmt.Sprintf("oncecheck %s (%s)", v, bi.GoVersion)
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

// parse parses flags, allowing flags after positional arguments ("--"
// ends them). --help prints the usage once; an unknown flag is one line
// naming the closest known flag.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	usage := fs.Usage
	fs.Usage = func() {} // the flag package calls it on errors too
	defer func() { fs.Usage = usage }()
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				usage()
				return nil, err
			}
			if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: "); ok {
				var known []string
				fs.VisitAll(func(f *flag.Flag) { known = append(known, dashes(f.Name)) })
				name = dashes(strings.TrimLeft(name, "-"))
				return nil, usagef("unknown flag %s%s (see 'oncecheck %s --help')", name, didYouMean(name, known), fs.Name())
			}
			return nil, usagef("%s", strings.Replace(err.Error(), " -", " --", 1))
		}
		if consumed := len(args) - fs.NArg(); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, fs.Args()...), nil
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// dashes writes a flag's name as the usage text does: -v, --strategy.
func dashes(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// didYouMean names the candidate closest to s, when one is close enough
// to be a misspelling of it.
func didYouMean(s string, candidates []string) string {
	best, bestDist := "", len(strings.TrimLeft(s, "-"))/3+1
	for _, c := range candidates {
		if d := editDistance(strings.TrimLeft(s, "-"), strings.TrimLeft(c, "-")); d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return " (did you mean " + best + "?)"
}

// editDistance is the Levenshtein distance between a and b.
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

// self is how the user invoked this tool, for printed commands: the
// path it was started by, or, under go run, the go run of its package
// (relative to the main module when it is in it).
func self() string {
	exe := os.Args[0]
	if !strings.Contains(exe, "go-build") {
		if strings.ContainsRune(exe, filepath.Separator) {
			return exe
		}
		return filepath.Base(exe)
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Path == "" || strings.HasSuffix(bi.Path, ".test") {
		return "go run ./cmd/oncecheck"
	}
	if rel, ok := strings.CutPrefix(bi.Path, bi.Main.Path); ok && bi.Main.Path != "" && (rel == "" || rel[0] == '/') {
		return "go run ." + rel
	}
	return "go run " + bi.Path
}
