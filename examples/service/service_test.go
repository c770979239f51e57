package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/internal/pgtest"
	"github.com/oncecheck/oncecheck/model"
	"github.com/oncecheck/oncecheck/service"
)

// runner builds this service and returns a service-mode runner of it,
// with the broken variant bug ("" for the correct one).
func runner(t *testing.T, bug string, kinds ...faults.Kind) *service.Runner {
	t.Helper()
	dsn := pgtest.DSN(t)
	bin := filepath.Join(t.TempDir(), "orders")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	schema, err := os.ReadFile("schema.sql")
	require.NoError(t, err)
	r, err := service.New(service.Config{
		Command: "ORDERS_BUG=" + bug + " exec " + bin, Schema: string(schema),
		ObserveSQL: "SELECT aggregate, state FROM orders", Faults: kinds, DSN: dsn,
		NATS: os.Getenv("ONCECHECK_NATS"),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	return r
}

// TestCorrectServicePasses runs the correct service under every fault
// kind service mode injects: every run is exactly-once.
func TestCorrectServicePasses(t *testing.T) {
	r := runner(t, "", service.Kinds...)
	runs := 12
	if testing.Short() {
		runs = 6
	}
	for seed := uint64(1); seed <= uint64(runs); seed++ {
		c := r.Generate(seed)
		h, res, err := r.Run(context.Background(), c, seed)
		require.NoError(t, err)
		require.Equal(t, histories.Pass, res.Verdict, "seed %d: %v\n%s", seed, res.Findings, h.Timeline())
	}
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
