// Package nodeservice verifies the Node.js orders service of this
// directory (orders.js: nats.js and node-postgres from the npm registry) in
// oncecheck's service mode, as examples/service verifies the Go one: the
// correct version passes under every fault kind, each broken variant is
// caught and its counterexample shrunk. The tests need node and npm: they
// fail under $CI without them and are skipped, saying why, elsewhere.
package nodeservice

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/internal/pgtest"
	"github.com/oncecheck/oncecheck/model"
	"github.com/oncecheck/oncecheck/report"
	"github.com/oncecheck/oncecheck/service"
)

// install is `npm ci`, run once per test binary when node_modules is
// missing or older than package-lock.json.
var install = sync.OnceValues(func() ([]byte, error) {
	installed, err := os.Stat(filepath.Join("node_modules", ".package-lock.json"))
	lock, lerr := os.Stat("package-lock.json")
	if err == nil && lerr == nil && !installed.ModTime().Before(lock.ModTime()) {
		return nil, nil // installed from this package-lock.json
	}
	cmd := exec.Command("npm", "ci", "--prefer-offline", "--no-audit", "--no-fund")
	return cmd.CombinedOutput()
})

// node returns the absolute path of this directory, once node and npm are
// there and the service's packages are installed (package-lock.json, by
// npm ci). Without node or npm the test fails under $CI and is skipped
// elsewhere.
func node(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			why := "no " + tool + " on PATH: the Node.js example service (examples/node-service) is not verified; install Node.js 18 or later with npm to run it"
			if os.Getenv("CI") != "" {
				t.Fatal(why)
			}
			t.Skip(why)
		}
	}
	out, err := install()
	require.NoError(t, err, "npm ci in examples/node-service:\n%s", out)
	dir, err := filepath.Abs(".")
	require.NoError(t, err)
	return dir
}

// config returns the service-mode configuration of the Node.js service,
// with the broken variant bug ("" for the correct one).
func config(t *testing.T, bug string, kinds ...faults.Kind) service.Config {
	t.Helper()
	dir := node(t)
	dsn := pgtest.DSN(t)
	schema, err := os.ReadFile("schema.sql")
	require.NoError(t, err)
	return service.Config{
		Command: "ORDERS_BUG=" + bug + " exec node orders.js", Dir: dir, Schema: string(schema),
		ObserveSQL: "SELECT aggregate, state FROM orders", Faults: kinds, DSN: dsn,
	}
}

// runner returns a service-mode runner of the Node.js service.
func runner(t *testing.T, bug string, kinds ...faults.Kind) *service.Runner {
	t.Helper()
	r, err := service.New(config(t, bug, kinds...))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	return r
}

// addItem is the one-message workload of the hand-built cases.
func addItem() model.Workload {
	return model.Workload{{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)}}.Number()
}

// one is a case of addItem and the fault f, with two consumers.
func one(f faults.Fault) service.Case {
	return service.Case{Workload: addItem(), Plan: faults.Plan{Consumers: 2, Faults: []faults.Fault{f}}}
}

// TestCorrectServicePasses runs the correct service under every fault
// kind service mode injects: every run is exactly-once.
func TestCorrectServicePasses(t *testing.T) {
	runs := 12
	if testing.Short() {
		runs = 6
	}
	service.Verify(t, config(t, "", service.Kinds...), service.VerifyOptions{Runs: runs, Out: t.TempDir()})
}

// TestEveryCrashPointStrikes: each crash point of service mode is a
// boundary this service (node-postgres, nats.js) passes, so a crash
// planned there strikes, and the correct service survives it.
func TestEveryCrashPointStrikes(t *testing.T) {
	r := runner(t, "", faults.Crash)
	for _, point := range service.CrashPoints {
		h, res, err := r.Run(context.Background(), one(faults.Fault{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: point}), 0)
		require.NoError(t, err)
		require.Equal(t, histories.Pass, res.Verdict, "%s: %v\n%s", point, res.Findings, h.Timeline())
		crashed := false
		for _, ev := range h.Events {
			crashed = crashed || ev.Kind == histories.Crash && ev.Point == string(point)
		}
		require.True(t, crashed, "%s: the crash did not strike\n%s", point, h.Timeline())
	}
}

// TestCorrectServiceSurvivesPublishFailures: a publish the broker refuses,
// and one it stores while nats.js is told it failed, are retried from the
// outbox, under the same ids.
func TestCorrectServiceSurvivesPublishFailures(t *testing.T) {
	r := runner(t, "", faults.PublishFailure)
	for _, variant := range []string{faults.Rejected, faults.LostConfirm} {
		h, res, err := r.Run(context.Background(), one(faults.Fault{Kind: faults.PublishFailure, Variant: variant, Process: faults.Consumer, At: 0, Index: 1}), 0)
		require.NoError(t, err)
		require.Equal(t, histories.Pass, res.Verdict, "%s: %v\n%s", variant, res.Findings, h.Timeline())
		require.Equal(t, 1, h.InjectedFaults()[string(faults.PublishFailure)], "%s: the fault struck once\n%s", variant, h.Timeline())
	}
}

// TestBrokenVariantsAreCaught runs each broken variant on the case that
// exposes its bug, as in examples/service: ack-first loses the message
// when its process dies just after the ack; dedup-first loses it when its
// process dies after the inbox mark's own commit; check-first applies it
// twice when its process stands still past the ack wait after reading the
// inbox (the broker gives the copy to the other process, which applies
// it, and the first wakes up and applies it again).
func TestBrokenVariantsAreCaught(t *testing.T) {
	for _, tc := range []struct {
		bug   string
		fault faults.Fault
		want  histories.Anomaly
	}{
		{"ack-first", faults.Fault{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: service.AfterAck}, histories.Lost},
		{"dedup-first", faults.Fault{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: faults.AfterCommit}, histories.Lost},
		{"check-first", faults.Fault{Kind: faults.Redelivery, Variant: faults.LeaseExpired, At: 0, Index: 2}, histories.Duplicate},
	} {
		t.Run(tc.bug, func(t *testing.T) {
			r := runner(t, tc.bug, tc.fault.Kind)
			h, res, err := r.Run(context.Background(), one(tc.fault), 0)
			require.NoError(t, err)
			require.Equal(t, histories.Violation, res.Verdict, "%s", h.Timeline())
			require.Equal(t, tc.want, res.Primary(), "%v\n%s", res.Findings, h.Timeline())
		})
	}
}

// size is a case's messages and faults, what shrinking reduces.
func size(c service.Case) int { return len(c.Workload) + len(c.Plan.Faults) }

// search runs the generated cases of seeds from to from+runs-1 until one
// fails, shrinks it (each smaller case run up to 3 times, once in -short)
// and returns the run it failed at, the case before and
// after shrinking, and the explanation of the shrunk one; it fails the test
// when no run fails.
func search(t *testing.T, bug string, from uint64, runs int) (at int, before, after service.Case, explained string) {
	t.Helper()
	// The kinds the searches' seeds were chosen with.
	r := runner(t, bug, []faults.Kind{faults.Crash, faults.Redelivery, faults.Reorder, faults.PublishFailure, faults.Reissue, faults.Concurrent}...)
	ctx := context.Background()
	for i := range runs {
		seed := from + uint64(i)
		c := r.Generate(seed)
		h, res, err := r.Run(ctx, c, seed)
		require.NoError(t, err)
		if res.Verdict == histories.Pass {
			continue
		}
		require.Equal(t, histories.Violation, res.Verdict, "seed %d: %v\n%s", seed, res.Findings, h.Timeline())
		tries := 3 // runs of each smaller case
		if testing.Short() {
			tries = 1
		}
		small, h, res, _, err := r.Shrink(ctx, c, h, res, tries)
		require.NoError(t, err)
		var b bytes.Buffer
		b.WriteString(report.VerdictLine(res) + "\n")
		for _, f := range small.Plan.Faults {
			b.WriteString("  - " + service.Describe(f) + "\n")
		}
		require.NoError(t, report.Explanation(&b, h, res))
		path, err := histories.Save(h, t.TempDir(), "shrunk.jsonl")
		require.NoError(t, err)
		t.Logf("%s: caught at run %d (seed %d), shrunk from %d to %d messages and faults; saved %s\n%s", bug, i+1, seed, size(c), size(small), path, b.String())
		return i + 1, c, small, b.String()
	}
	t.Fatalf("%s: no failure in %d runs from seed %d", bug, runs, from)
	return 0, service.Case{}, service.Case{}, ""
}

// TestSearchFindsAndShrinksDedupFirst: a search over generated cases
// finds the dedup-first variant's lost message, shrinks it to a smaller
// case and explains it, naming the fault and the inbox statement.
func TestSearchFindsAndShrinksDedupFirst(t *testing.T) {
	_, before, after, explained := search(t, "dedup-first", 1016, 8)
	require.Less(t, size(after), size(before), "shrinking removed nothing")
	require.Contains(t, explained, "VIOLATION: lost")
	require.Contains(t, explained, "SIGKILL the consumer of delivery")
	require.Contains(t, explained, "INSERT INTO inbox")
}

// TestSearchFindsEveryVariant: searches over generated cases, within a
// bounded number of runs, find and shrink the ack-first and check-first
// variants too (not in -short: a minute or more).
func TestSearchFindsEveryVariant(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the dedup-first search stands for them")
	}
	for _, bug := range []string{"ack-first", "check-first"} {
		t.Run(bug, func(t *testing.T) {
			_, before, after, _ := search(t, bug, 1000, 40)
			require.LessOrEqual(t, size(after), size(before))
		})
	}
}
