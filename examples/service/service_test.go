package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/examples/internal/orders"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/internal/pgtest"
	"github.com/oncecheck/oncecheck/model"
	"github.com/oncecheck/oncecheck/report"
	"github.com/oncecheck/oncecheck/service"
)

// config builds this service (service.BuildGo) and returns the
// service-mode configuration of it, with the broken variant bug ("" for
// the correct one).
func config(t testing.TB, bug string, kinds ...faults.Kind) service.Config {
	t.Helper()
	bin, err := service.BuildGo(context.Background(), ".", t.TempDir())
	require.NoError(t, err)
	cfg := verifyConfig(t, kinds...)
	cfg.Command = "ORDERS_BUG=" + bug + " exec " + bin
	return cfg
}

// verifyConfig is the service-mode configuration of this service without
// its command: service.Verify builds and runs it (VerifyOptions.GoPackage).
func verifyConfig(t testing.TB, kinds ...faults.Kind) service.Config {
	t.Helper()
	schema, err := os.ReadFile("schema.sql")
	require.NoError(t, err)
	return service.Config{
		Schema: string(schema), ObserveSQL: "SELECT aggregate, state FROM orders", Faults: kinds, DSN: pgtest.DSN(t),
	}
}

// runner returns a service-mode runner of this service.
func runner(t testing.TB, bug string, kinds ...faults.Kind) *service.Runner {
	t.Helper()
	r, err := service.New(config(t, bug, kinds...))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	return r
}

// TestCorrectServicePasses runs the correct service under every fault
// kind service mode injects, two runs at once: every run is
// exactly-once. Verify builds this package itself.
func TestCorrectServicePasses(t *testing.T) {
	runs := 12
	if testing.Short() {
		runs = 6
	}
	service.Verify(t, verifyConfig(t, service.Kinds...), service.VerifyOptions{Runs: runs, Parallel: 2, Out: t.TempDir(), GoPackage: "."})
}

// observeOrders reads the orders table as ObserveSQL would, in Go: the
// observation function of Config.Observe.
func observeOrders(ctx context.Context, db *pgx.Conn) (map[string]model.State, error) {
	rows, err := db.Query(ctx, "SELECT aggregate, state FROM orders")
	if err != nil {
		return nil, fmt.Errorf("read orders: %w", err)
	}
	states := map[string]model.State{}
	for rows.Next() {
		var agg string
		var o orders.Order
		if err := rows.Scan(&agg, &o); err != nil {
			return nil, fmt.Errorf("read orders: %w", err)
		}
		st, err := json.Marshal(o)
		if err != nil {
			return nil, err
		}
		states[agg] = st
	}
	return states, rows.Err()
}

// TestVerifyObservesByAFunction: Verify with an observation function
// instead of a query; the function is called once per run, on the run's
// schema, and the correct service passes.
func TestVerifyObservesByAFunction(t *testing.T) {
	cfg := verifyConfig(t, faults.Crash)
	cfg.ObserveSQL = ""
	var calls atomic.Int32
	cfg.Observe = func(ctx context.Context, db *pgx.Conn) (map[string]model.State, error) {
		calls.Add(1)
		return observeOrders(ctx, db)
	}
	rec := &recorder{T: t}
	service.Verify(rec, cfg, service.VerifyOptions{Runs: 2, GoPackage: "."})
	require.Empty(t, rec.errors)
	require.EqualValues(t, 2, calls.Load())
}

// TestAnObservationFunctionsErrorSurfaces: an error of the observation
// function fails the run with it, named as the function's, not as a
// verdict.
func TestAnObservationFunctionsErrorSurfaces(t *testing.T) {
	cfg := config(t, "")
	cfg.ObserveSQL = ""
	errGone := errors.New("the orders table is gone")
	cfg.Observe = func(context.Context, *pgx.Conn) (map[string]model.State, error) { return nil, errGone }
	r, err := service.New(cfg)
	require.NoError(t, err)
	defer r.Close()
	_, _, err = r.Run(context.Background(), r.Generate(1), 1)
	require.ErrorIs(t, err, errGone)
	require.ErrorContains(t, err, "the observation function (Config.Observe): the orders table is gone")
	rec := &recorder{T: t}
	service.Verify(rec, cfg, service.VerifyOptions{Runs: 1})
	require.Len(t, rec.errors, 1)
	require.Contains(t, rec.errors[0], "the observation function (Config.Observe): the orders table is gone")
}

// TestVerifyReportsABuildThatFails: a Go package that does not build
// fails the test with the compiler's errors.
func TestVerifyReportsABuildThatFails(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module broken\n\ngo 1.22\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { undefinedThing() }\n"), 0o644))
	rec := &recorder{T: t}
	service.Verify(rec, verifyConfig(t), service.VerifyOptions{Runs: 1, GoPackage: dir})
	require.Len(t, rec.errors, 1)
	require.Contains(t, rec.errors[0], "go build")
	require.Contains(t, rec.errors[0], "undefinedThing")
}

// TestAckFirstIsCaught: the variant that acks a message as it arrives
// loses it when its process dies before the work is committed.
func TestAckFirstIsCaught(t *testing.T) {
	r := runner(t, "ack-first", faults.Crash)
	c := service.Case{
		Workload: model.Workload{{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)}}.Number(),
		Plan:     faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: service.AfterAck}}},
	}
	h, res, err := r.Run(context.Background(), c, 0)
	require.NoError(t, err)
	require.Equal(t, histories.Violation, res.Verdict, "%s", h.Timeline())
	require.Equal(t, histories.Lost, res.Primary())
}

// TestDedupFirstIsCaught: the variant that commits its inbox mark in a
// transaction of its own loses a message whose process dies between that
// commit and the change's.
func TestDedupFirstIsCaught(t *testing.T) {
	r := runner(t, "dedup-first", faults.Crash)
	c := service.Case{
		Workload: model.Workload{{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)}}.Number(),
		Plan:     faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: faults.AfterCommit}}},
	}
	h, res, err := r.Run(context.Background(), c, 0)
	require.NoError(t, err)
	require.Equal(t, histories.Violation, res.Verdict, "%s", h.Timeline())
	require.Equal(t, histories.Lost, res.Primary())
	// The finding's own sentence names the process, the boundary and
	// the statement: the inbox mark, committed by itself, whose reply
	// the proxy held as the process was killed.
	var b strings.Builder
	require.NoError(t, report.Explanation(&b, h, res))
	var line string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "  lost: k1 ") {
			line = l
		}
	}
	require.Regexp(t, `\. The fault that struck it: step \d+, consumer-[12], in attempt #1 \(k1\), at the boundary after-commit: `+
		`SIGKILL the consumer of delivery #1 after the server committed its commit #1, before it sees the reply; `+
		`the statement: INSERT INTO inbox \(key\) VALUES \(\$1\) ON CONFLICT DO NOTHING \(INSERT 0 1\), its reply held, `+
		`on db connection \d+ of consumer-[12], tx\d+\.$`, line, "%s", b.String())
}

// TestCorrectServiceSurvivesPublishFailures: a publish the broker refuses,
// and one it stores while the publisher is told it failed, are retried
// from the outbox, under the same ids.
func TestCorrectServiceSurvivesPublishFailures(t *testing.T) {
	r := runner(t, "", faults.PublishFailure)
	for _, variant := range []string{faults.Rejected, faults.LostConfirm} {
		c := service.Case{
			Workload: model.Workload{{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)}}.Number(),
			Plan:     faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.PublishFailure, Variant: variant, Process: faults.Consumer, At: 0, Index: 1}}},
		}
		h, res, err := r.Run(context.Background(), c, 0)
		require.NoError(t, err)
		require.Equal(t, histories.Pass, res.Verdict, "%s: %v\n%s", variant, res.Findings, h.Timeline())
		require.Equal(t, 1, h.InjectedFaults()[string(faults.PublishFailure)], "%s: the fault struck once\n%s", variant, h.Timeline())
	}
}

// recorder is a TB that keeps what Verify reports.
type recorder struct {
	*testing.T
	errors []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

// TestVerifyFindsShrinksAndExplains: a search over generated cases finds
// the dedup-first variant's lost message (the case of seed 3002 has it),
// shrinks it, explains it and saves its history.
func TestVerifyFindsShrinksAndExplains(t *testing.T) {
	rec := &recorder{T: t}
	out := t.TempDir()
	service.Verify(rec, config(t, "dedup-first", service.Kinds...), service.VerifyOptions{Runs: 5, Seed: 2998, Out: out})
	require.Len(t, rec.errors, 1)
	msg := rec.errors[0]
	require.Contains(t, msg, "VIOLATION: lost")
	require.Contains(t, msg, "SIGKILL the consumer of delivery #1")
	require.Contains(t, msg, "INSERT INTO inbox")
	require.Regexp(t, `\n  lost: [^\n]*The fault that struck it: step \d+, consumer-[12], in attempt #\d+ \(k\d\), at the boundary [a-z-]+: [^\n]*INSERT INTO inbox`, msg,
		"the finding's sentence names the process, the boundary and the statement")
	require.Contains(t, msg, "saved: "+out)
}

// TestCheckFirstIsCaught: the variant that reads its inbox before its
// transaction, and does not look at what the inbox insert finds, applies
// a message twice when its process stands still past the ack wait after
// that read: the broker gives the copy to the other process, which
// applies it, and the first one wakes up and applies it again.
func TestCheckFirstIsCaught(t *testing.T) {
	r := runner(t, "check-first", faults.Redelivery)
	c := service.Case{
		Workload: model.Workload{{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)}}.Number(),
		Plan:     faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Redelivery, Variant: faults.LeaseExpired, At: 0, Index: 2}}},
	}
	h, res, err := r.Run(context.Background(), c, 0)
	require.NoError(t, err)
	require.Equal(t, histories.Violation, res.Verdict, "%s", h.Timeline())
	require.Equal(t, histories.Duplicate, res.Primary())
}

// TestPauseAtDeliveryIsReplanned: a pause as the copy reaches the
// process lands before or after the process's first statements, which
// the proxy does not hold; its event says how many the attempt had sent,
// and a replay that follows the history (service.Replan) pauses at the
// reply to the last of them instead, where check-first then fails every
// time.
func TestPauseAtDeliveryIsReplanned(t *testing.T) {
	r := runner(t, "check-first", faults.Redelivery)
	c := service.Case{
		Workload: model.Workload{
			{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)},
			{Aggregate: "o2", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"b"}`)},
			{Aggregate: "o3", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"c"}`)},
		}.Number(),
		Plan: faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Redelivery, Variant: faults.LeaseExpired, At: 2}}},
	}
	h, _, err := r.Run(context.Background(), c, 0)
	require.NoError(t, err)
	noted := false
	for _, ev := range h.Events {
		noted = noted || ev.Kind == histories.Requeue && regexp.MustCompile(`statements the attempt had sent as it took effect: \d+$`).MatchString(ev.Detail)
	}
	require.True(t, noted, "the pause's event says where it landed\n%s", h.Timeline())
	plan, notes := service.Replan(h)
	f := plan.Faults[0]
	t.Logf("re-applied at Index %d: %v", f.Index, notes)
	if f.Index == 0 {
		require.Empty(t, notes, "kept as saved: the attempt had sent nothing\n%s", h.Timeline())
		return
	}
	require.Len(t, notes, 1)
	require.Greater(t, f.Index, 1)
	h2, res, err := r.Run(context.Background(), service.Case{Workload: c.Workload, Plan: plan, Order: service.OrderOf(h)}, 0)
	require.NoError(t, err)
	require.Equal(t, histories.Duplicate, res.Primary(), "paused after its inbox read\n%s", h2.Timeline())
}

// TestEveryCrashPointStrikes: each crash point of service mode is a
// boundary this service (pgx, nats.go) passes, so a crash planned there
// strikes, and the correct service survives it.
func TestEveryCrashPointStrikes(t *testing.T) {
	r := runner(t, "", faults.Crash)
	for _, point := range service.CrashPoints {
		c := service.Case{
			Workload: model.Workload{{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)}}.Number(),
			Plan:     faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: point}}},
		}
		h, res, err := r.Run(context.Background(), c, 0)
		require.NoError(t, err)
		require.Equal(t, histories.Pass, res.Verdict, "%s: %v\n%s", point, res.Findings, h.Timeline())
		crashed := false
		for _, ev := range h.Events {
			crashed = crashed || ev.Kind == histories.Crash && ev.Point == string(point)
		}
		require.True(t, crashed, "%s: the crash did not strike\n%s", point, h.Timeline())
	}
}
