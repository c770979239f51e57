package main

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
	"github.com/oncecheck/oncecheck/service"
)

// twoAdds is a workload of two messages to one order.
func twoAdds() model.Workload {
	return model.Workload{
		{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)},
		{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":2,"sku":"b"}`)},
	}.Number()
}

// struck returns the events a fault of kind k caused.
func struck(h *histories.History, k faults.Kind) []histories.Event {
	var out []histories.Event
	for _, ev := range h.Events {
		if ev.Fault == string(k) {
			out = append(out, ev)
		}
	}
	return out
}

// TestCorrectServiceSurvivesCutsAndRestarts: the PostgreSQL proxy cuts
// the process's connection at each of the first statements of its
// transaction; the server rolls the transaction back, the service's pool
// sees a broken connection, the handler fails and nacks, and the
// redelivered copy is applied once. Then the embedded NATS server stops
// after the first delivery and starts again on its storage; the
// service's client reconnects (or its process exits and is restarted),
// the unacknowledged copy comes back, and every message is applied once.
func TestCorrectServiceSurvivesCutsAndRestarts(t *testing.T) {
	r := runner(t, "", faults.CutConnection, faults.BrokerRestart)
	for index := range 3 {
		c := service.Case{
			Workload: twoAdds(),
			Plan:     faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.CutConnection, At: 0, Index: index}}},
		}
		h, res, err := r.Run(context.Background(), c, 0)
		require.NoError(t, err)
		require.Equal(t, histories.Pass, res.Verdict, "statement %d: %v\n%s", index, res.Findings, h.Timeline())
		evs := struck(h, faults.CutConnection)
		require.Len(t, evs, 1, "statement %d: the cut struck once\n%s", index, h.Timeline())
		require.Equal(t, histories.Abort, evs[0].Kind)
		require.Contains(t, evs[0].Detail, "db connection")
		require.True(t, strings.Contains(evs[0].Detail, "INSERT") || strings.Contains(evs[0].Detail, "SELECT") || strings.Contains(evs[0].Detail, "UPDATE"), "the abort names the statement: %s", evs[0].Detail)
	}
	c := service.Case{
		Workload: twoAdds(),
		Plan:     faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.BrokerRestart, At: 0}}},
	}
	h, res, err := r.Run(context.Background(), c, 0)
	require.NoError(t, err)
	require.Equal(t, histories.Pass, res.Verdict, "%v\n%s", res.Findings, h.Timeline())
	evs := struck(h, faults.BrokerRestart)
	require.Len(t, evs, 2, "the broker stopped and started again\n%s", h.Timeline())
	require.Contains(t, evs[1].Detail, "runs again")
}

// TestDedupFirstIsCaughtByACutConnection: the variant that commits its
// inbox mark before the change's transaction loses the message when that
// transaction is cut: the redelivered copy finds the mark and skips it.
func TestDedupFirstIsCaughtByACutConnection(t *testing.T) {
	r := runner(t, "dedup-first", faults.CutConnection)
	c := service.Case{
		Workload: model.Workload{{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)}}.Number(),
		Plan:     faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.CutConnection, At: 0, Index: 0}}},
	}
	h, res, err := r.Run(context.Background(), c, 0)
	require.NoError(t, err)
	require.Equal(t, histories.Violation, res.Verdict, "%s", h.Timeline())
	require.Equal(t, histories.Lost, res.Primary())
}
