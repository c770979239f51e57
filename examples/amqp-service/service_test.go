package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/internal/amqptest"
	"github.com/oncecheck/oncecheck/internal/pgtest"
	"github.com/oncecheck/oncecheck/model"
	"github.com/oncecheck/oncecheck/service"
)

// bin is this service, built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "amqp-service-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "orders")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the service: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// config returns the service-mode configuration of this service on
// RabbitMQ, with the broken variant bug ("" for the correct one).
func config(t *testing.T, bug string, kinds ...faults.Kind) service.Config {
	t.Helper()
	dsn := pgtest.DSN(t)
	url := amqptest.URL(t)
	schema, err := os.ReadFile("schema.sql")
	require.NoError(t, err)
	return service.Config{
		Command: "ORDERS_BUG=" + bug + " exec " + bin, Schema: string(schema),
		ObserveSQL: "SELECT aggregate, state FROM orders", Faults: kinds, DSN: dsn,
		Broker: "amqp", BrokerURL: url,
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

// one is a case of one message and one fault.
func one(f faults.Fault) service.Case {
	return service.Case{
		Workload: model.Workload{{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)}}.Number(),
		Plan:     faults.Plan{Consumers: 2, Faults: []faults.Fault{f}},
	}
}

// TestAckFirstIsCaught: the variant that acks a delivery as it arrives
// loses it when its process dies before the work is committed.
func TestAckFirstIsCaught(t *testing.T) {
	r := runner(t, "ack-first", faults.Crash)
	h, res, err := r.Run(context.Background(), one(faults.Fault{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: service.AfterAck}), 0)
	require.NoError(t, err)
	require.Equal(t, histories.Violation, res.Verdict, "%s", h.Timeline())
	require.Equal(t, histories.Lost, res.Primary())
}

// TestEveryCrashPointStrikes: each crash point is a boundary this service
// (pgx, amqp091-go) passes, so a crash planned there strikes, and the
// correct service survives it.
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

// TestCorrectServicePasses runs the correct service under every fault
// kind service mode injects on RabbitMQ: every run is exactly-once.
func TestCorrectServicePasses(t *testing.T) {
	runs := 12
	if testing.Short() {
		runs = 6
	}
	kinds, err := service.BrokerKinds("amqp")
	require.NoError(t, err)
	service.Verify(t, config(t, "", kinds...), service.VerifyOptions{Runs: runs, Out: t.TempDir()})
}

// TestDedupFirstIsCaught: the variant that commits its inbox mark in a
// transaction of its own loses a message whose process dies between that
// commit and the change's.
func TestDedupFirstIsCaught(t *testing.T) {
	r := runner(t, "dedup-first", faults.Crash)
	h, res, err := r.Run(context.Background(), one(faults.Fault{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: faults.AfterCommit}), 0)
	require.NoError(t, err)
	require.Equal(t, histories.Violation, res.Verdict, "%s", h.Timeline())
	require.Equal(t, histories.Lost, res.Primary())
}

// TestCorrectServiceSurvivesPublishFailures: a publish the proxy refuses
// (a basic.nack to the confirm-mode publisher), and one the server stores
// while its confirmation is turned into a basic.nack, are retried from
// the outbox, under the same ids.
func TestCorrectServiceSurvivesPublishFailures(t *testing.T) {
	r := runner(t, "", faults.PublishFailure)
	for _, variant := range []string{faults.Rejected, faults.LostConfirm} {
		h, res, err := r.Run(context.Background(), one(faults.Fault{Kind: faults.PublishFailure, Variant: variant, Process: faults.Consumer, At: 0, Index: 1}), 0)
		require.NoError(t, err)
		require.Equal(t, histories.Pass, res.Verdict, "%s: %v\n%s", variant, res.Findings, h.Timeline())
		require.Equal(t, 1, h.InjectedFaults()[string(faults.PublishFailure)], "%s: the fault struck once\n%s", variant, h.Timeline())
	}
}

// TestCorrectServiceSurvivesRedelivery: an ack the proxy swaps for a
// basic.reject with requeue, and a pause past the consumer timeout at
// each of its places, bring the copy again (redelivered), and the inbox
// absorbs it.
func TestCorrectServiceSurvivesRedelivery(t *testing.T) {
	r := runner(t, "", faults.Redelivery)
	fs := []faults.Fault{{Kind: faults.Redelivery, Variant: faults.AckLost, At: 0}}
	pauses := 4 // at the delivery, at the ack, at SQL replies 0 and 1
	if testing.Short() {
		pauses = 2 // a pause at a SQL reply is TestCheckFirstIsCaught's
	}
	for i := range pauses {
		fs = append(fs, faults.Fault{Kind: faults.Redelivery, Variant: faults.LeaseExpired, At: 0, Index: i})
	}
	for _, f := range fs {
		h, res, err := r.Run(context.Background(), one(f), 0)
		require.NoError(t, err)
		require.Equal(t, histories.Pass, res.Verdict, "%s: %v\n%s", service.Describe(f), res.Findings, h.Timeline())
		redelivered := 0
		for _, ev := range h.Events {
			if ev.Kind == histories.Deliver {
				redelivered++
			}
		}
		require.GreaterOrEqual(t, redelivered, 2, "%s: the copy did not come again\n%s", service.Describe(f), h.Timeline())
	}
}

// TestCheckFirstIsCaught: the variant that reads its inbox before its
// transaction applies a message twice when its process stands still past
// the consumer timeout after that read: RabbitMQ closes its channel and
// gives the copy to the other process, which applies it; the first one
// wakes up and commits the change again (its late ack is refused, which
// does not undo the commit).
func TestCheckFirstIsCaught(t *testing.T) {
	r := runner(t, "check-first", faults.Redelivery)
	h, res, err := r.Run(context.Background(), one(faults.Fault{Kind: faults.Redelivery, Variant: faults.LeaseExpired, At: 0, Index: 2}), 0)
	require.NoError(t, err)
	require.Equal(t, histories.Violation, res.Verdict, "%s", h.Timeline())
	require.Equal(t, histories.Duplicate, res.Primary())
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
// the ack-first variant's lost message (the case of seed 2 has it: two
// deliveries prefetched by one process, the first acked, the process
// killed), shrinks it, explains it and saves its history.
func TestVerifyFindsShrinksAndExplains(t *testing.T) {
	rec := &recorder{T: t}
	out := t.TempDir()
	// The kinds the case of seed 2 was drawn from.
	kinds := []faults.Kind{faults.Crash, faults.Redelivery, faults.Reorder, faults.PublishFailure, faults.Reissue, faults.Concurrent}
	service.Verify(rec, config(t, "ack-first", kinds...), service.VerifyOptions{Runs: 1, Seed: 2, ShrinkTries: 1, Out: out})
	require.Len(t, rec.errors, 1)
	msg := rec.errors[0]
	require.Contains(t, msg, "VIOLATION: lost")
	require.Contains(t, msg, "SIGKILL the consumer")
	require.Contains(t, msg, "saved: "+out)
	t.Log(msg)
}
