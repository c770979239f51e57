package main

import (
	"context"
	"strings"
	"testing"
	"time"

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

// lateCase is one message and a late copy of its first delivery: the
// same id again (variant "") or a re-issue with a new id.
func lateCase(variant string) service.Case {
	return service.Case{
		Workload: model.Workload{{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)}}.Number(),
		Plan:     faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Late, Variant: variant, At: 0, Delay: faults.Duration(200 * time.Millisecond)}}},
	}
}

// deliveries counts the deliveries of a message id.
func deliveries(h *histories.History, id string) int {
	n := 0
	for _, ev := range h.Events {
		if ev.Kind == histories.Deliver && ev.Message.ID == id {
			n++
		}
	}
	return n
}

// TestCorrectServiceSurvivesLateCopies: once the first delivery was
// handled and acknowledged, the sender publishes the message again, with
// its id (past ONCECHECK_IN's duplicate window, so the broker keeps it) or
// with a new one; the copy reaches the service, whose inbox skips it.
func TestCorrectServiceSurvivesLateCopies(t *testing.T) {
	r := runner(t, "", faults.Late)
	for _, variant := range []string{"", faults.LateReissue} {
		h, res, err := r.Run(context.Background(), lateCase(variant), 0)
		require.NoError(t, err)
		require.Equal(t, histories.Pass, res.Verdict, "%q: %v\n%s", variant, res.Findings, h.Timeline())
		evs := struck(h, faults.Late)
		require.Len(t, evs, 1, "%q: the late copy was sent once\n%s", variant, h.Timeline())
		if variant == "" {
			require.Equal(t, histories.Requeue, evs[0].Kind)
			require.Equal(t, 2, deliveries(h, "m1"), "the same id reached the service twice\n%s", h.Timeline())
		} else {
			require.Equal(t, histories.Send, evs[0].Kind)
			require.Equal(t, 1, deliveries(h, evs[0].Message.ID), "the re-issue reached the service\n%s", h.Timeline())
		}
		var acked bool
		for _, ev := range h.Events[:evs[0].Step-1] {
			acked = acked || ev.Kind == histories.Ack && ev.Attempt == 1
		}
		require.True(t, acked, "%q: the copy was sent after the first attempt's ack\n%s", variant, h.Timeline())
	}
}

// TestNoInboxIsCaughtByALateCopy: the variant without an inbox applies a
// message again when a copy of it comes back after it was handled, with
// its id or a new one.
func TestNoInboxIsCaughtByALateCopy(t *testing.T) {
	r := runner(t, "no-inbox", faults.Late)
	for _, variant := range []string{"", faults.LateReissue} {
		h, res, err := r.Run(context.Background(), lateCase(variant), 0)
		require.NoError(t, err)
		require.Equal(t, histories.Violation, res.Verdict, "%q\n%s", variant, h.Timeline())
		require.Equal(t, histories.Duplicate, res.Primary(), "%q: %v", variant, res.Findings)
	}
}
