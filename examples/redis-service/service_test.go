package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/internal/pgtest"
	"github.com/oncecheck/oncecheck/internal/redistest"
	"github.com/oncecheck/oncecheck/model"
	"github.com/oncecheck/oncecheck/service"
)

// bin is this service, built once by TestMain for every test.
var bin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "oncecheck-redis-service-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "orders")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the service: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// config returns the service-mode configuration of this service on Redis
// Streams, with the broken variant bug ("" for the correct one).
func config(t *testing.T, bug string, kinds ...faults.Kind) service.Config {
	t.Helper()
	dsn := pgtest.DSN(t)
	addr := redistest.Addr(t)
	schema, err := os.ReadFile("schema.sql")
	require.NoError(t, err)
	return service.Config{
		Command: "ORDERS_BUG=" + bug + " exec " + bin, Schema: string(schema),
		ObserveSQL: "SELECT aggregate, state FROM orders", Faults: kinds, DSN: dsn,
		Broker: "redis", BrokerURL: addr,
	}
}

// runner returns a service-mode runner of this service.
func runner(t *testing.T, bug string, kinds ...faults.Kind) *service.Runner {
	t.Helper()
	r, err := service.New(config(t, bug, kinds...))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	return r
}

// one is a workload of one message.
func one() model.Workload {
	return model.Workload{{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)}}.Number()
}

// run runs one case of one fault on the one-message workload.
func run(t *testing.T, r *service.Runner, f faults.Fault) (*histories.History, histories.Verdict, histories.Anomaly) {
	t.Helper()
	c := service.Case{Workload: one(), Plan: faults.Plan{Consumers: 2, Faults: []faults.Fault{f}}}
	h, res, err := r.Run(context.Background(), c, 0)
	require.NoError(t, err)
	return h, res.Verdict, res.Primary()
}

// TestCorrectServicePasses runs the correct service under every fault
// kind service mode injects on Redis: every run is exactly-once.
func TestCorrectServicePasses(t *testing.T) {
	runs := 12
	if testing.Short() {
		runs = 6
	}
	kinds, err := service.BrokerKinds("redis")
	require.NoError(t, err)
	service.Verify(t, config(t, "", kinds...), service.VerifyOptions{Runs: runs, Out: t.TempDir()})
}

// TestLateCopyAfterAClaimedEntry: a publish whose confirmation is lost
// leaves the attempt unacknowledged; the other consumer claims the entry
// and acknowledges it, so the first attempt never ends. The late copy
// planned on it is sent once the entry was acknowledged elsewhere (it
// used to wait for the first attempt, and the run was stuck: seed 50162
// of a 300-run campaign).
func TestLateCopyAfterAClaimedEntry(t *testing.T) {
	cfg := config(t, "")
	cfg.Bound = 10 * time.Second
	r, err := service.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	c := service.Case{Workload: one(), Plan: faults.Plan{Consumers: 2, Faults: []faults.Fault{
		{Kind: faults.Late, At: 0, Delay: faults.Duration(200 * time.Millisecond)},
		{Kind: faults.PublishFailure, Variant: faults.LostConfirm, Process: faults.Consumer, At: 0},
	}}}
	h, res, err := r.Run(context.Background(), c, 0)
	require.NoError(t, err)
	require.Equal(t, histories.Pass, res.Verdict, "%v", res.Primary())
	late := false
	for _, ev := range h.Events {
		late = late || ev.Fault == string(faults.Late)
	}
	require.True(t, late, "the late copy was sent")
}

// TestAckFirstIsCaught: the variant that XACKs an entry as it arrives
// loses it when its process dies before the work is committed.
func TestAckFirstIsCaught(t *testing.T) {
	r := runner(t, "ack-first", faults.Crash)
	h, verdict, primary := run(t, r, faults.Fault{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: service.AfterAck})
	require.Equal(t, histories.Violation, verdict, "%s", h.Timeline())
	require.Equal(t, histories.Lost, primary)
}

// TestCheckFirstIsCaught: the variant that reads its inbox before its
// transaction applies an entry twice when its process stands still past
// the claim idle time after that read: the other consumer claims the
// entry (XAUTOCLAIM), applies and acknowledges it, and the first one wakes
// up, applies it again and acknowledges it late, which Redis accepts.
func TestCheckFirstIsCaught(t *testing.T) {
	r := runner(t, "check-first", faults.Redelivery)
	h, verdict, primary := run(t, r, faults.Fault{Kind: faults.Redelivery, Variant: faults.LeaseExpired, At: 0, Index: 2})
	require.Equal(t, histories.Violation, verdict, "%s", h.Timeline())
	require.Equal(t, histories.Duplicate, primary)
	deliveries := 0
	for _, ev := range h.Events {
		if ev.Kind == histories.Deliver {
			deliveries++
		}
	}
	require.GreaterOrEqual(t, deliveries, 2, "the entry was claimed\n%s", h.Timeline())
	late := false
	for _, ev := range h.Events {
		late = late || ev.Kind == histories.Ack && strings.HasPrefix(ev.Detail, "a late XACK")
	}
	require.True(t, late, "the zombie's late XACK was taken\n%s", h.Timeline())
}

// TestEveryCrashPointStrikes: each crash point of service mode is a
// boundary this service (pgx, go-redis) passes, so a crash planned there
// strikes, and the correct service survives it.
func TestEveryCrashPointStrikes(t *testing.T) {
	r := runner(t, "", faults.Crash)
	for _, point := range service.CrashPoints {
		h, verdict, _ := run(t, r, faults.Fault{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: point})
		require.Equal(t, histories.Pass, verdict, "%s\n%s", point, h.Timeline())
		crashed := false
		for _, ev := range h.Events {
			crashed = crashed || ev.Kind == histories.Crash && ev.Point == string(point)
		}
		require.True(t, crashed, "%s: the crash did not strike\n%s", point, h.Timeline())
	}
}

// TestCorrectServiceSurvivesRedeliveries: a dropped XACK leaves the entry
// pending, and a claim takes it again; a pause past the claim idle time,
// at the delivery or at the XACK, lets the other consumer claim the entry
// while the first stands still.
func TestCorrectServiceSurvivesRedeliveries(t *testing.T) {
	r := runner(t, "", faults.Redelivery)
	for _, f := range []faults.Fault{
		{Kind: faults.Redelivery, Variant: faults.AckLost, At: 0},
		{Kind: faults.Redelivery, Variant: faults.LeaseExpired, At: 0, Index: 0},
		{Kind: faults.Redelivery, Variant: faults.LeaseExpired, At: 0, Index: 1},
	} {
		h, verdict, _ := run(t, r, f)
		require.Equal(t, histories.Pass, verdict, "%s\n%s", service.Describe(f), h.Timeline())
		deliveries := 0
		for _, ev := range h.Events {
			if ev.Kind == histories.Deliver {
				deliveries++
			}
		}
		require.GreaterOrEqual(t, deliveries, 2, "%s: the entry came again\n%s", service.Describe(f), h.Timeline())
	}
}

// TestCorrectServiceSurvivesPublishFailures: an XADD the proxy refuses,
// and one Redis stores while the publisher is told it failed, are retried
// from the outbox, under the same ids.
func TestCorrectServiceSurvivesPublishFailures(t *testing.T) {
	r := runner(t, "", faults.PublishFailure)
	for _, variant := range []string{faults.Rejected, faults.LostConfirm} {
		h, verdict, _ := run(t, r, faults.Fault{Kind: faults.PublishFailure, Variant: variant, Process: faults.Consumer, At: 0, Index: 1})
		require.Equal(t, histories.Pass, verdict, "%s\n%s", variant, h.Timeline())
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

// TestVerifyFindsShrinksAndExplainsAckFirst: a search over generated
// cases finds the ack-first variant's lost message (the case of seed 9
// crashes the process after its first SQL write, which follows its
// XACK), shrinks it, explains it and saves its history.
func TestVerifyFindsShrinksAndExplainsAckFirst(t *testing.T) {
	rec := &recorder{T: t}
	out := t.TempDir()
	service.Verify(rec, config(t, "ack-first", faults.Crash), service.VerifyOptions{Runs: 3, Seed: 9, Out: out})
	require.Len(t, rec.errors, 1)
	msg := rec.errors[0]
	require.Contains(t, msg, "VIOLATION: lost", msg)
	require.Contains(t, msg, "SIGKILL the consumer of delivery #1 after the server ran its SQL write #1", msg)
	require.Contains(t, msg, "saved: "+out)
}

// BenchmarkRuns measures generated runs of the correct service on Redis
// Streams, two consumers and every fault kind, up to 4 messages and 2
// faults a case: b.N runs, each checked; a failing one fails the
// benchmark. It reports runs per second and where the time went.
func BenchmarkRuns(b *testing.B) {
	dsn := pgtest.DSN(b)
	addr := redistest.Addr(b)
	schema, err := os.ReadFile("schema.sql")
	require.NoError(b, err)
	kinds, err := service.BrokerKinds("redis")
	require.NoError(b, err)
	r, err := service.New(service.Config{
		Command: "exec " + bin, Schema: string(schema), ObserveSQL: "SELECT aggregate, state FROM orders",
		Faults: kinds, DSN: dsn, Broker: "redis", BrokerURL: addr,
	})
	require.NoError(b, err)
	defer r.Close()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		seed := uint64(i + 1)
		h, res, err := r.Run(context.Background(), r.Generate(seed), seed)
		require.NoError(b, err)
		require.Equal(b, histories.Pass, res.Verdict, "seed %d: %v\n%s", seed, res.Findings, h.Timeline())
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "runs/s")
	b.Logf("%+v", r.Timings())
}
