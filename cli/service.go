package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/report"
	"github.com/oncecheck/oncecheck/service"
)

func serviceCmd(ctx context.Context, cat catalogue.Catalogue, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlagSet("service", "service --cmd COMMAND --schema FILE.sql --observe-sql QUERY [flags]", `  oncecheck service --cmd ./orders --schema schema.sql \
      --observe-sql 'SELECT aggregate, state FROM orders' --runs 50
  oncecheck service --cmd 'python3 consumer.py' --schema schema.sql \
      --observe-sql 'SELECT id, state FROM orders' --faults crash,redelivery --seed 7
`, stdout)
	var (
		command     = fs.String("cmd", "", "the service's command line, run with sh -c (directly when it is plain words) as --consumers processes (any language; see docs/service-mode.md)")
		dir         = fs.String("dir", "", "the command's working directory (default: the current one)")
		consumers   = fs.Int("consumers", 2, "processes of the command per run")
		schemaFile  = fs.String("schema", "", "SQL file applied to each run's fresh schema before the service starts")
		observeSQL  = fs.String("observe-sql", "", "query returning (aggregate, state as JSON) after the run drains")
		modelName   = fs.String("model", "orders", "reference model")
		faultList   = fs.String("faults", "all", "comma-separated fault kinds of service mode (crash, redelivery, reorder, publish-failure, reissue, concurrent, late, cut-connection, broker-restart), all (every kind the broker supports) or none")
		runs        = fs.Int("runs", 20, "number of runs")
		parallel    = fs.Int("parallel", 1, "runs at once, each on a runner with a broker of its own (the failure reported is the one of the lowest seed)")
		seed        = fs.Uint64("seed", 0, "campaign seed; run i uses seed+i (default: random, always printed)")
		maxMessages = fs.Int("max-messages", 4, "most logical messages per run")
		maxFaults   = fs.Int("max-faults", 2, "most faults per run")
		pgDSN       = fs.String("pg", "", "PostgreSQL DSN (default: $ONCECHECK_PG); each run gets a schema of its own")
		brokerName  = fs.String("broker", "nats", "the broker the service consumes: "+strings.Join(service.Brokers, ", "))
		brokerURL   = fs.String("broker-url", "", "the broker's server (default: $ONCECHECK_<BROKER>, as $ONCECHECK_NATS; else an embedded one or the broker's default address)")
		natsURL     = fs.String("nats", "", "short for --broker nats --broker-url URL")
		sendSQL     = fs.String("send-sql", "", "--broker postgres: the statement that sends a job, with $1 id, $2 key, $3 type, $4 aggregate, $5 payload (JSON), $6 position (see docs/service-mode-postgres.md)")
		queueCol    = fs.String("queue", "", "--broker postgres: the queue table and its column holding the job's id, as TABLE.COLUMN, or TABLE.COLUMN->>'FIELD' for a field of a JSON column (default: read from --send-sql)")
		doneWhen    = fs.String("done-when", "", "--broker postgres: an SQL condition on the queue table's columns that holds once a job is finished (default: its row is deleted)")
		outputsTab  = fs.String("outputs-table", "", "--broker postgres: the table the service inserts its events into: TABLE, with columns id, type, cause, payload, or TABLE(ID, TYPE, CAUSE, PAYLOAD)")
		lease       = fs.Duration("lease", time.Second, "--broker postgres: how long a worker may hold a job before another may take it, given to the service as QUEUE_LEASE_MS")
		releaseSQL  = fs.String("release-sql", "", "--broker postgres: a statement that gives job $1 back as its lease running out would, run for the jobs of a process oncecheck killed (default: the lease runs out)")
		quietFor    = fs.Duration("quiet", 300*time.Millisecond, "how long nothing may be recorded, with no statement, transaction or publish in flight, for a run to count as drained")
		settle      = fs.Duration("settle", 50*time.Millisecond, "on Linux, a run also drains once every process has stood idle this long (no CPU used, no thread running, nothing unread in a socket, no timer due within a second) with nothing recorded, before --quiet passes; 0: --quiet alone")
		bound       = fs.Duration("bound", 30*time.Second, "how long a run may take to drain before it is stuck")
		reruns      = fs.Int("reruns", 0, "re-run the (shrunk) failing case this many times and print how often it fails the same way")
		shrinkTries = fs.Int("shrink-tries", 3, "runs of each smaller candidate while shrinking a failure (0: no shrinking)")
		replay      = fs.String("replay", "", "re-run the workload and faults of a saved service history (--reruns times, default 10) instead of generating cases")
		follow      = fs.Bool("follow", true, "with --replay or --reruns: hold each BEGIN, SQL write and COMMIT at the proxies until those recorded before it in the saved history are done (up to 400ms each), to pin races between processes")
		out         = fs.String("out", "oncecheck-results", "directory for saved histories")
		verbose     = fs.Bool("v", false, "show the service's output on standard error")
	)
	rest, err := parse(fs, args)
	if err != nil {
		return exitUsage, err
	}
	if len(rest) > 0 {
		return exitUsage, usagef("unexpected argument %q", rest[0])
	}
	if *command == "" {
		return exitUsage, usagef("--cmd is required: the service's command line")
	}
	if *observeSQL == "" {
		return exitUsage, usagef("--observe-sql is required: a query returning (aggregate, state as JSON)")
	}
	if *runs < 1 {
		return exitUsage, usagef("--runs must be at least 1")
	}
	if *parallel < 1 || *parallel > 64 {
		return exitUsage, usagef("--parallel must be between 1 and 64")
	}
	var kinds []faults.Kind
	switch *faultList {
	case "none":
	case "all": // below, once the broker is known
	default:
		if kinds, err = faults.ParseKindsOf(*faultList, slices.Concat(faults.AllKinds, faults.ServiceKinds)); err != nil {
			return exitUsage, usagef("--faults: %v", err)
		}
	}
	m, err := cat.Model(*modelName)
	if err != nil {
		return exitUsage, usagef("--model: %v", err)
	}
	var schema []byte
	if *schemaFile != "" {
		if schema, err = os.ReadFile(*schemaFile); err != nil {
			return exitUsage, usagef("--schema: %v", err)
		}
	}
	dsn := *pgDSN
	if dsn == "" {
		dsn = os.Getenv("ONCECHECK_PG")
	}
	if dsn == "" {
		return exitUsage, usagef("--pg: service mode needs PostgreSQL: set $ONCECHECK_PG or --pg")
	}
	if err := checkDSN(dsn); err != nil {
		return exitUsage, err
	}
	if *natsURL != "" {
		*brokerName, *brokerURL = "nats", *natsURL
	}
	var queue service.PGQueue
	if *brokerName == "postgres" {
		queue = service.PGQueue{SendSQL: *sendSQL, Queue: *queueCol, DoneWhen: *doneWhen, Outputs: *outputsTab, Lease: *lease, ReleaseSQL: *releaseSQL}
		switch {
		case *sendSQL == "":
			return exitUsage, usagef("--send-sql is required with --broker postgres: the statement that sends a job")
		case *outputsTab == "":
			return exitUsage, usagef("--outputs-table is required with --broker postgres: the table the service inserts its events into")
		case *schemaFile == "":
			return exitUsage, usagef("--schema is required with --broker postgres: the queue and outputs tables must exist before the service starts")
		case *brokerURL != "":
			return exitUsage, usagef("--broker-url: the postgres queue is in each run's schema on --pg, it has no URL")
		}
	} else {
		for _, f := range []struct{ name, v string }{{"--send-sql", *sendSQL}, {"--queue", *queueCol}, {"--done-when", *doneWhen}, {"--outputs-table", *outputsTab}, {"--release-sql", *releaseSQL}} {
			if f.v != "" {
				return exitUsage, usagef("%s is for --broker postgres", f.name)
			}
		}
		if flagSet(fs, "lease") {
			return exitUsage, usagef("--lease is for --broker postgres")
		}
	}
	if *brokerURL == "" && *brokerName != "postgres" {
		*brokerURL = os.Getenv("ONCECHECK_" + strings.ToUpper(strings.ReplaceAll(*brokerName, "-", "_")))
	}
	if *faultList == "all" {
		if kinds, err = service.BrokerKinds(*brokerName); err != nil {
			return exitUsage, usagef("--broker: %v", err)
		}
		if *brokerURL != "" { // oncecheck restarts only a server it started
			kinds = slices.DeleteFunc(kinds, func(k faults.Kind) bool { return k == faults.BrokerRestart })
		}
		names := make([]string, len(kinds))
		for i, k := range kinds {
			names[i] = string(k)
		}
		*faultList = strings.Join(names, ",")
	}
	output := io.Discard
	if *verbose {
		output = stderr
	}
	workers := *parallel
	if *replay != "" {
		workers = 1
	}
	runners, err := service.NewRunners(service.Config{
		Command: *command, Dir: *dir, Consumers: *consumers, Schema: string(schema), ObserveSQL: *observeSQL,
		Model: m, Faults: kinds, MaxMessages: *maxMessages, MaxFaults: *maxFaults, DSN: dsn, Broker: *brokerName, BrokerURL: *brokerURL,
		Quiet: *quietFor, Settle: settleFlag(*settle), Bound: *bound, Output: output, Queue: queue,
	}, workers)
	if err != nil {
		if _, ok := errors.AsType[*service.ConfigError](err); ok {
			return exitUsage, usagef("%v", err)
		}
		return exitInconclusive, err
	}
	defer service.CloseRunners(runners)
	runner := runners[0]
	if *seed == 0 {
		*seed = randomSeed()
	}
	if *replay != "" {
		return replayService(ctx, runner, *replay, max(*reruns, 1), *follow, stdout)
	}
	fmt.Fprintf(stdout, "oncecheck service: %q consumers=%d model=%s faults=%s runs=%d seed=%d\n", *command, *consumers, *modelName, *faultList, *runs, *seed)
	started := time.Now()
	f, err := service.RunSeeds(ctx, runners, *seed, *runs)
	if ctx.Err() != nil {
		fmt.Fprintf(stdout, "INTERRUPTED after %d runs: %v\n", service.SumTimings(runners).Runs, context.Cause(ctx))
		return interruptedCode(ctx), nil
	}
	if err != nil {
		return exitInconclusive, err
	}
	if f == nil {
		fmt.Fprintf(stdout, "PASS: %d runs in %s\n", *runs, time.Since(started).Round(time.Millisecond))
		printTimings(stdout, service.SumTimings(runners), time.Since(started))
		return exitPass, nil
	}
	i, s, c, h, res := f.Index, f.Seed, f.Case, f.History, f.Result
	runner = f.Runner
	if res.Verdict == histories.Inconclusive {
		fmt.Fprintf(stdout, "INCONCLUSIVE at run %d (seed %d): %s\n", i+1, s, res.Reason)
		return exitInconclusive, nil
	}
	fmt.Fprintf(stdout, "%s at run %d (seed %d), after %s\n", report.VerdictLine(res), i+1, s, time.Since(started).Round(time.Millisecond))
	if *shrinkTries > 0 {
		before := fmt.Sprintf("%d messages, %d faults", len(c.Workload), len(c.Plan.Faults))
		var n int
		if c, h, res, n, err = runner.Shrink(ctx, c, h, res, *shrinkTries); err != nil {
			return exitInconclusive, fmt.Errorf("shrink: %w", err)
		}
		fmt.Fprintf(stdout, "Shrunk from %s to %d messages, %d faults in %d runs\n", before, len(c.Workload), len(c.Plan.Faults), n)
		h.Header.Seed = s
	}
	fmt.Fprintln(stdout, "Faults, as injected:")
	for _, f := range c.Plan.Faults {
		fmt.Fprintf(stdout, "  - %s\n", service.Describe(f))
	}
	if lines := service.Struck(h); len(lines) > 0 {
		fmt.Fprintln(stdout, "Where they struck:")
		for _, l := range lines {
			fmt.Fprintf(stdout, "  - %s\n", l)
		}
	}
	if err := report.Explanation(stdout, h, res); err != nil {
		return exitInconclusive, err
	}
	path, err := histories.Save(h, *out, fmt.Sprintf("service-seed%d.jsonl", s))
	if err != nil {
		fmt.Fprintf(stdout, "\nNot saved: %v\n", err)
	} else {
		fmt.Fprintf(stdout, "\nSaved:  %s\nShow:   %s show %s\n", path, self(), path)
	}
	if *reruns > 0 {
		if *follow {
			c.Order = service.OrderOf(h)
			c.Plan = replan(h, stdout)
		}
		again, err := runner.Reproduce(ctx, c, res.Signature(), *reruns)
		if err != nil {
			return exitInconclusive, err
		}
		fmt.Fprintf(stdout, "Reproduced: %d of %d re-runs of the case failed the same way (%s)\n", again, *reruns, res.Signature())
	}
	return exitViolation, nil
}

// replayService re-runs a saved history's workload and faults n times and
// says how often the run failed as the history did.
func replayService(ctx context.Context, runner *service.Runner, path string, n int, follow bool, stdout io.Writer) (int, error) {
	h, err := histories.Load(path)
	if err != nil {
		return exitUsage, usagef("--replay: %v", err)
	}
	res, err := checkers.Check(h, runner.Config().Model, checkers.Options{})
	if err != nil {
		return exitUsage, usagef("--replay: %v", err)
	}
	c := service.Case{Workload: h.Header.Workload, Plan: h.Header.Plan}
	if follow {
		c.Order = service.OrderOf(h)
		c.Plan = replan(h, stdout)
	}
	if len(c.Workload) == 0 {
		return exitUsage, usagef("--replay: %s has no workload to run again", path)
	}
	same, err := runner.Reproduce(ctx, c, res.Signature(), n)
	if ctx.Err() != nil {
		fmt.Fprintf(stdout, "INTERRUPTED: %v\n", context.Cause(ctx))
		return interruptedCode(ctx), nil
	}
	if err != nil {
		return exitInconclusive, err
	}
	fmt.Fprintf(stdout, "%s: %s; %d of %d re-runs failed the same way\n", path, report.VerdictLine(res), same, n)
	if res.Verdict == histories.Violation && same > 0 {
		return exitViolation, nil
	}
	return exitPass, nil
}

// replan returns the plan re-runs that follow history h run
// (service.Replan), and says which faults they re-apply elsewhere than
// the plan as saved puts them.
func replan(h *histories.History, stdout io.Writer) faults.Plan {
	plan, notes := service.Replan(h)
	for _, n := range notes {
		fmt.Fprintf(stdout, "Following the saved history: %s\n", n)
	}
	return plan
}

// settleFlag turns --settle into Config.Settle: 0 there is "never"
// (a negative Config.Settle), not the default.
func settleFlag(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// printTimings says where the runs' time went, per run on average, and
// how many runs a second the campaign made over elapsed.
func printTimings(w io.Writer, t service.Timings, elapsed time.Duration) {
	if t.Runs == 0 {
		return
	}
	per := func(d time.Duration) time.Duration { return (d / time.Duration(t.Runs)).Round(time.Millisecond) }
	fmt.Fprintf(w, "Per run: %s: schema %s, setup %s, process start %s, work %s, drain %s, teardown %s, check %s\n",
		per(t.Total()), per(t.Schema), per(t.Setup), per(t.Start), per(t.Work), per(t.Drain), per(t.Teardown), per(t.Check))
	fmt.Fprintf(w, "Runs per second: %.2f\n", float64(t.Runs)/elapsed.Seconds())
}

// flagSet reports whether the command line set the flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
