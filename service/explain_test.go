package service

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// explained returns the text of the one finding of keys and attempts
// once Explain has run on events.
func explained(t *testing.T, events []histories.Event, keys []string, attempts []int) string {
	t.Helper()
	for i := range events {
		events[i].Step = i + 1
	}
	res := checkers.Result{Findings: []checkers.Finding{{Anomaly: histories.Lost, Keys: keys, Attempts: attempts, Text: "k2 had no effect at all"}}}
	require.NoError(t, Explain(&histories.History{Events: events}, &res))
	return res.Findings[0].Text
}

func sends() []histories.Event {
	m1 := model.Message{ID: "m1", Key: "k1", Aggregate: "o1", Type: model.AddItem}
	m2 := model.Message{ID: "m2", Key: "k2", Aggregate: "o1", Type: model.AddItem}
	return []histories.Event{
		{Kind: histories.Send, Process: "sender", Message: &m1},
		{Kind: histories.Send, Process: "sender", Message: &m2},
		{Kind: histories.Deliver, Attempt: 1, Process: "consumer-1", Message: &m1},
		{Kind: histories.Deliver, Attempt: 2, Process: "consumer-2", Message: &m2},
	}
}

// TestExplainNamesTheFaultOnAFindingsMessage: the sentence names the
// process, the attempt, the boundary and the statement of the fault that
// struck an attempt at the finding's message, and no fault that struck
// another message or no message.
func TestExplainNamesTheFaultOnAFindingsMessage(t *testing.T) {
	evs := append(sends(),
		histories.Event{Kind: histories.Crash, Attempt: 1, Process: "consumer-1", Point: string(faults.AfterCommit), Fault: string(faults.Crash),
			Detail: "SIGKILL: SIGKILL the consumer of delivery #1 after ...; the statement: UPDATE orders SET state = $2 (UPDATE 1), its reply held, on db connection 1 of consumer-1, tx1"},
		histories.Event{Kind: histories.Restart, Process: "broker", Fault: string(faults.BrokerRestart), Detail: "stopped"},
		histories.Event{Kind: histories.Crash, Attempt: 2, Process: "consumer-2", Point: string(faults.AfterWrite), Fault: string(faults.Crash),
			Detail: "SIGKILL: SIGKILL the consumer of delivery #2 after the server ran its SQL write #1, before it sees the reply; the statement: INSERT INTO inbox (key) VALUES ($1) (INSERT 0 1), its reply held, on db connection 1 of consumer-2, outside a transaction"},
	)
	text := explained(t, evs, []string{"k2"}, []int{2})
	require.Equal(t, "k2 had no effect at all. The fault that struck it: step 7, consumer-2, in attempt #2 (k2), at the boundary after-write: "+
		"SIGKILL the consumer of delivery #2 after the server ran its SQL write #1, before it sees the reply; "+
		"the statement: INSERT INTO inbox (key) VALUES ($1) (INSERT 0 1), its reply held, on db connection 1 of consumer-2, outside a transaction.", text)
}

// TestExplainNamesEachFault: several faults on a finding's messages are
// each named, in the order they struck, with what the history says of
// their statement, or that there was none.
func TestExplainNamesEachFault(t *testing.T) {
	r := model.Message{ID: "m2-r1", Key: "k2", Aggregate: "o1", Type: model.AddItem}
	evs := append(sends(),
		histories.Event{Kind: histories.Send, Process: "sender", Message: &r, Fault: string(faults.Reissue)},
		histories.Event{Kind: histories.Crash, Attempt: 2, Process: "consumer-2", Point: string(faults.BeforeHandle), Fault: string(faults.Crash),
			Detail: "SIGKILL: SIGKILL the consumer that delivery #2 reaches, before it gets the copy"},
		histories.Event{Kind: histories.Deliver, Attempt: 3, Process: "consumer-1", Message: &r},
		histories.Event{Kind: histories.Abort, Attempt: 3, Tx: 4, Process: "consumer-1", Fault: string(faults.CutConnection),
			Detail: "the proxy cut db connection 2 of consumer-1, both sides, as the server's reply to UPDATE orders SET state = $2 (UPDATE 1, statement #3 of tx4) came back"},
	)
	text := explained(t, evs, []string{"k2"}, []int{2, 3})
	require.Equal(t, "k2 had no effect at all. The 3 faults that struck it: "+
		"(1) step 5, the sender published it as m2-r1 (reissue); no SQL statement at this boundary; "+
		"(2) step 6, consumer-2, in attempt #2 (k2), at the boundary before-handle: SIGKILL the consumer that delivery #2 reaches, before it gets the copy; no SQL statement: the process never got the copy; "+
		"(3) step 8, consumer-1, in attempt #3 (k2), at the boundary cut-connection: the proxy cut db connection 2 of consumer-1, both sides, as the server's reply to UPDATE orders SET state = $2 (UPDATE 1, statement #3 of tx4) came back.", text)
}

// TestExplainSaysWhenNoFaultStruck: a finding whose messages no fault
// struck says so, whatever struck other messages.
func TestExplainSaysWhenNoFaultStruck(t *testing.T) {
	evs := append(sends(),
		histories.Event{Kind: histories.AckLost, Attempt: 1, Process: "consumer-1", Fault: string(faults.Redelivery), Detail: "the proxy drops the ack of delivery #1: redelivered"},
	)
	m1 := *evs[0].Message
	late := append(sends(), histories.Event{Kind: histories.Requeue, Process: "sender", Message: &m1, Fault: string(faults.Late),
		Detail: "late: the sender publishes m1 again, with the same id, 200ms after attempt #1 of delivery #1 ended"})
	require.Equal(t, "k2 had no effect at all. The fault that struck it: step 5, late: the sender publishes m1 again, with the same id, "+
		"200ms after attempt #1 of delivery #1 ended; no SQL statement at this boundary.", explained(t, late, []string{"k1"}, []int{1}))
	require.Equal(t, "k2 had no effect at all. No fault struck an attempt at k2 or a send of it.", explained(t, evs, []string{"k2"}, []int{2}))
	require.Equal(t, "k2 had no effect at all. The fault that struck it: step 5, consumer-1, in attempt #1 (k1), at the boundary its ack (ack-lost): "+
		"the proxy drops the ack of delivery #1: redelivered; no SQL statement at this boundary.", explained(t, evs, []string{"k1"}, []int{1}))
}

// TestExplainNamesACrashAfterTheAttemptEnded: a crash planned at an
// attempt's after-ack strikes once the attempt has ended; its event has
// no attempt but the attempt's message, and the sentence names it as the
// fault that struck the message, in its attempt.
func TestExplainNamesACrashAfterTheAttemptEnded(t *testing.T) {
	m1 := model.Message{ID: "m1", Key: "k1", Aggregate: "o1", Type: model.AddItem}
	evs := append(sends(),
		histories.Event{Kind: histories.Ack, Attempt: 1, Process: "consumer-1"},
		histories.Event{Kind: histories.Done, Attempt: 1, Process: "consumer-1"},
		histories.Event{Kind: histories.Crash, Process: "consumer-1", Message: &m1, Point: string(AfterAck), Fault: string(faults.Crash),
			Detail: "SIGKILL after attempt #1 ended: SIGKILL the consumer of delivery #1 after its ack; the reply held to the commit that finished job m1, on db connection 1 of consumer-1, tx2"},
	)
	h := &histories.History{Events: evs}
	for i := range evs {
		evs[i].Step = i + 1
	}
	require.NoError(t, h.Validate())
	text := explained(t, evs, []string{"k1"}, []int{1})
	require.Equal(t, "k2 had no effect at all. The fault that struck it: step 7, consumer-1, in attempt #1 (k1), after the attempt ended, at the boundary after-ack: "+
		"SIGKILL the consumer of delivery #1 after its ack; the reply held to the commit that finished job m1, on db connection 1 of consumer-1, tx2.", text)
	require.Equal(t, []string{"step 7, consumer-1: SIGKILL after attempt #1 ended: SIGKILL the consumer of delivery #1 after its ack; the reply held to the commit that finished job m1, on db connection 1 of consumer-1, tx2"}, Struck(h))
}

// TestExplainIsIdempotentAndSkipsPasses: a second Explain adds nothing, and
// a result without findings does not read the history.
func TestExplainIsIdempotentAndSkipsPasses(t *testing.T) {
	evs := sends()
	for i := range evs {
		evs[i].Step = i + 1
	}
	h := &histories.History{Events: evs}
	res := checkers.Result{Findings: []checkers.Finding{{Anomaly: histories.Lost, Keys: []string{"k2"}, Attempts: []int{2}, Text: "k2 had no effect at all"}}}
	require.NoError(t, Explain(h, &res))
	once := res.Findings[0].Text
	require.NoError(t, Explain(h, &res))
	require.Equal(t, once, res.Findings[0].Text)
	require.Equal(t, "k2 had no effect at all. No fault struck an attempt at k2 or a send of it.", once)
	require.NoError(t, Explain(failing{}, &checkers.Result{Verdict: histories.Pass}))
}

// failing is a history that cannot be read.
type failing struct{}

func (failing) Each(func(*histories.Event) error) error { return errors.New("read") }

func (failing) Validate() error { return errors.New("read") }
