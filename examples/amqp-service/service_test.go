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
	"github.com/oncecheck/oncecheck/internal/amqptest"
	"github.com/oncecheck/oncecheck/internal/pgtest"
	"github.com/oncecheck/oncecheck/model"
	"github.com/oncecheck/oncecheck/service"
)

// config builds this service and returns the service-mode configuration
// of it on RabbitMQ, with the broken variant bug ("" for the correct one).
func config(t *testing.T, bug string, kinds ...faults.Kind) service.Config {
	t.Helper()
	dsn := pgtest.DSN(t)
	url := amqptest.URL(t)
	bin := filepath.Join(t.TempDir(), "orders")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
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
