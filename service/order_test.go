package service

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// TestOrderOf: a saved history's begins, writes and explicit commits, in
// order, named by the copy whose attempt ran them; a write that committed
// by itself is one step.
func TestOrderOf(t *testing.T) {
	m1, m2 := &model.Message{ID: "m1", Key: "k1"}, &model.Message{ID: "m2", Key: "k2"}
	h := &histories.History{Events: []histories.Event{
		{Kind: histories.Deliver, Attempt: 1, Message: m1},
		{Kind: histories.Deliver, Attempt: 2, Message: m2},
		{Kind: histories.Write, Attempt: 1, Tx: 1},
		{Kind: histories.Commit, Attempt: 1, Tx: 1, Detail: byItself + " (no transaction open)"},
		{Kind: histories.Begin, Attempt: 2, Tx: 2},
		{Kind: histories.Begin, Attempt: 1, Tx: 3},
		{Kind: histories.Write, Attempt: 1, Tx: 3},
		{Kind: histories.Commit, Attempt: 2, Tx: 2},
		{Kind: histories.Commit, Attempt: 1, Tx: 3},
	}}
	require.Equal(t, Order{
		{ID: "m1", Kind: histories.Write}, {ID: "m2", Kind: histories.Begin}, {ID: "m1", Kind: histories.Begin},
		{ID: "m1", Kind: histories.Write, N: 1}, {ID: "m2", Kind: histories.Commit}, {ID: "m1", Kind: histories.Commit},
	}, OrderOf(h))
	require.Equal(t, histories.Commit, stmtKind(" commit;"))
	require.Equal(t, histories.Begin, stmtKind("begin isolation level serializable"))
	require.Equal(t, histories.Write, stmtKind("INSERT INTO inbox (key) VALUES ($1)"))
	require.Equal(t, histories.Kind(""), stmtKind("SELECT 1"))
	require.Equal(t, histories.Write, tagKind("INSERT 0 1"))

	g := newGate(OrderOf(h))
	require.True(t, g.ready(0))
	require.False(t, g.ready(2))
	g.skip(2)
	require.True(t, g.ready(2))
}

// TestReplan: a pause as a copy reaches its process whose saved history
// shows the attempt had sent k > 0 statements as it took effect is
// re-applied as the server's reply to statement k-1 comes back; one that
// had sent none, one whose history does not say, and every other fault
// are kept; the saved history's plan is not changed.
func TestReplan(t *testing.T) {
	pause := func(at int) faults.Fault {
		return faults.Fault{Kind: faults.Redelivery, Variant: faults.LeaseExpired, At: at}
	}
	crash := faults.Fault{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: faults.BeforeHandle}
	atAck := faults.Fault{Kind: faults.Redelivery, Variant: faults.LeaseExpired, At: 4, Index: 1}
	saved := []faults.Fault{pause(1), pause(2), pause(3), crash, atAck}
	stop := func(n int, note string) histories.Event {
		return histories.Event{Kind: histories.Requeue, Attempt: n, Process: "consumer-1", Fault: string(faults.Redelivery),
			Detail: "SIGSTOP consumer-1 at attempt 2 for 1.5s, past its ack wait: " + Describe(pause(n-1)) + note}
	}
	m := &model.Message{ID: "m1", Key: "k1"}
	h := &histories.History{
		Header: histories.Header{Plan: faults.Plan{Consumers: 2, Faults: slices.Clone(saved)}},
		Events: []histories.Event{
			{Kind: histories.Deliver, Attempt: 2, Message: m},
			{Kind: histories.Write, Attempt: 2, Tx: 1},
			stop(2, "; "+pauseSent+"3"),
			{Kind: histories.Deliver, Attempt: 3, Message: m},
			stop(3, "; "+pauseSent+"0"),
			{Kind: histories.Deliver, Attempt: 4, Message: m},
			stop(4, ""), // an earlier version's history
		},
	}
	plan, notes := Replan(h)
	want := slices.Clone(saved)
	want[0].Index = pauseAtStatement + 2
	require.Equal(t, want, plan.Faults)
	require.Equal(t, 2, plan.Consumers)
	require.Equal(t, saved, h.Header.Plan.Faults, "the saved plan is kept")
	require.Len(t, notes, 1)
	require.Contains(t, notes[0], "delivery #2 as the copy reached it took effect once its attempt had sent 3 SQL statements")
	require.Contains(t, notes[0], "SQL statement #3 comes back")

	k, ok := pausedAfter(h, 2)
	require.True(t, ok)
	require.Equal(t, 3, k)
	_, ok = pausedAfter(h, 4)
	require.False(t, ok)
	_, ok = pausedAfter(h, 9)
	require.False(t, ok)
}
