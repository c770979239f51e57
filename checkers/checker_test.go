package checkers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// builder builds histories by hand, for the orders model.
type builder struct{ h histories.History }

func (b *builder) add(ev histories.Event) *builder {
	ev.Step = len(b.h.Events) + 1
	b.h.Events = append(b.h.Events, ev)
	return b
}

func msg(id, key, agg, typ, payload string) *model.Message {
	return &model.Message{ID: id, Key: key, Aggregate: agg, Type: typ, Payload: json.RawMessage(payload)}
}

func (b *builder) send(id, key, agg, typ, payload string) *builder {
	return b.add(histories.Event{Kind: histories.Send, Process: "sender", Message: msg(id, key, agg, typ, payload)})
}

func (b *builder) deliver(attempt int, id, key, agg, typ, payload string) *builder {
	return b.add(histories.Event{Kind: histories.Deliver, Process: "consumer-1", Attempt: attempt, Message: msg(id, key, agg, typ, payload)})
}

// positioned sets the position of the message of the last event (its
// send or delivery), for ordered models.
func (b *builder) positioned(pos int64) *builder {
	b.h.Events[len(b.h.Events)-1].Message.Position = pos
	return b
}

func (b *builder) at(kind histories.Kind, attempt int) *builder {
	return b.add(histories.Event{Kind: kind, Process: "consumer-1", Attempt: attempt})
}

func (b *builder) publish(attempt int, id, cause, typ, payload string) *builder {
	m := msg(id, "", "o1", typ, payload)
	m.Causation = cause
	return b.add(histories.Event{Kind: histories.Publish, Process: "consumer-1", Attempt: attempt, Message: m})
}

func (b *builder) observe(agg, state string) *builder {
	return b.add(histories.Event{Kind: histories.Observe, Process: "observer", Aggregate: agg, State: model.State(state)})
}

const (
	addA     = `{"sku":"a","qty":1}`
	addB     = `{"sku":"b","qty":2}`
	oneA     = `{"lines":{"a":1},"confirmed":false}`
	itemA1   = `{"sku":"a","qty":1}`
	skuA     = `{"sku":"a"}`
	emptyObj = `{}`
)

func check(t *testing.T, b *builder, o Options) Result {
	t.Helper()
	res, err := Check(&b.h, model.Orders{}, o)
	require.NoError(t, err)
	return res
}

// processed adds a complete, correct attempt of AddItem(a,1) as m1/k1.
func processedA(b *builder, attempt int) *builder {
	return b.deliver(attempt, "m1", "k1", "o1", model.AddItem, addA).
		at(histories.Commit, attempt).
		publish(attempt, "m1/out1", "k1", model.ItemAdded, itemA1).
		publish(attempt, "m1/out2", "k1", model.FirstItemAdded, skuA).
		at(histories.Ack, attempt).at(histories.Done, attempt)
}

func TestCheckPass(t *testing.T) {
	b := (&builder{}).send("m1", "k1", "o1", model.AddItem, addA)
	processedA(b, 1).observe("o1", oneA)
	res := check(t, b, Options{})
	require.Equal(t, histories.Pass, res.Verdict)
	require.Empty(t, res.Anomalies)
}

func TestCheckLostOutputs(t *testing.T) {
	b := (&builder{}).send("m1", "k1", "o1", model.AddItem, addA).
		deliver(1, "m1", "k1", "o1", model.AddItem, addA).at(histories.Commit, 1).
		at(histories.Crash, 1).
		deliver(2, "m1", "k1", "o1", model.AddItem, addA).at(histories.Ack, 2).at(histories.Done, 2).
		observe("o1", oneA)
	res := check(t, b, Options{})
	require.Equal(t, histories.Violation, res.Verdict)
	require.Equal(t, []histories.Anomaly{histories.Lost}, res.Anomalies)
	require.Equal(t, []string{"k1"}, res.Findings[0].Keys)
	require.Contains(t, res.Findings[0].Text, `never published [FirstItemAdded{"sku":"a"}, ItemAdded{"qty":1,"sku":"a"}]`)
}

func TestCheckLostMessage(t *testing.T) {
	// Acked on receipt, then crashed: no effect at all.
	b := (&builder{}).send("m1", "k1", "o1", model.AddItem, addA).
		deliver(1, "m1", "k1", "o1", model.AddItem, addA).at(histories.Ack, 1).at(histories.Crash, 1).
		observe("o1", `{"lines":{},"confirmed":false}`)
	res := check(t, b, Options{})
	require.Equal(t, histories.Violation, res.Verdict)
	require.Equal(t, []histories.Anomaly{histories.Lost}, res.Anomalies)
	require.Contains(t, res.Findings[0].Text, "had no effect")
}

// appliedTwice is a history in which m1 (k1) is delivered twice and its
// effect applied twice.
func appliedTwice() *builder {
	b := (&builder{}).send("m1", "k1", "o1", model.AddItem, addA)
	return processedA(b, 1).
		deliver(2, "m1", "k1", "o1", model.AddItem, addA).at(histories.Commit, 2).
		publish(2, "id9", "k1", model.ItemAdded, `{"sku":"a","qty":2}`).
		at(histories.Ack, 2).at(histories.Done, 2).
		observe("o1", `{"lines":{"a":2},"confirmed":false}`)
}

func TestCheckDuplicate(t *testing.T) {
	b := appliedTwice()
	res := check(t, b, Options{})
	require.Equal(t, histories.Violation, res.Verdict)
	require.Equal(t, []histories.Anomaly{histories.Duplicate}, res.Anomalies)
	require.Contains(t, res.Findings[0].Text, "was applied twice")
}

func TestCheckRepublishedWithNewID(t *testing.T) {
	b := (&builder{}).send("m1", "k1", "o1", model.AddItem, addA)
	processedA(b, 1).
		deliver(2, "m1", "k1", "o1", model.AddItem, addA).
		publish(2, "fresh", "k1", model.ItemAdded, itemA1).
		at(histories.Ack, 2).at(histories.Done, 2).
		observe("o1", oneA)
	res := check(t, b, Options{})
	require.Equal(t, []histories.Anomaly{histories.Duplicate}, res.Anomalies)
	require.Contains(t, res.Findings[0].Text, "again with a new message id")
}

func TestCheckGhost(t *testing.T) {
	// Publish-first: attempt 1 of k1 publishes, then crashes before its
	// commit. k2 is processed on the empty order (so it is the first item),
	// then k1 again: its FirstItemAdded from attempt 1 belongs to no
	// exactly-once execution.
	b := (&builder{}).send("m1", "k1", "o1", model.AddItem, addA).
		send("m2", "k2", "o1", model.AddItem, addB).
		deliver(1, "m1", "k1", "o1", model.AddItem, addA).
		at(histories.Write, 1).
		publish(1, "m1/out1", "k1", model.ItemAdded, itemA1).
		publish(1, "m1/out2", "k1", model.FirstItemAdded, skuA).
		at(histories.Crash, 1).
		deliver(2, "m2", "k2", "o1", model.AddItem, addB).
		publish(2, "m2/out1", "k2", model.ItemAdded, `{"sku":"b","qty":2}`).
		publish(2, "m2/out2", "k2", model.FirstItemAdded, `{"sku":"b"}`).
		at(histories.Commit, 2).at(histories.Ack, 2).at(histories.Done, 2).
		deliver(3, "m1", "k1", "o1", model.AddItem, addA).
		publish(3, "m1/out1", "k1", model.ItemAdded, itemA1).
		at(histories.Commit, 3).at(histories.Ack, 3).at(histories.Done, 3).
		observe("o1", `{"lines":{"a":1,"b":2},"confirmed":false}`)
	res := check(t, b, Options{})
	require.Equal(t, histories.Violation, res.Verdict)
	require.Equal(t, []histories.Anomaly{histories.Ghost}, res.Anomalies)
	require.Equal(t, []string{"k1"}, res.Findings[0].Keys)
	require.Contains(t, res.Findings[0].Text, `published [FirstItemAdded{"sku":"a"}] from an attempt that never committed`)
}

func TestCheckSameIDDifferentContent(t *testing.T) {
	b := (&builder{}).send("m1", "k1", "o1", model.AddItem, addA)
	processedA(b, 1).
		publish(1, "m1/out1", "k1", model.ItemAdded, `{"sku":"a","qty":7}`).
		observe("o1", oneA)
	res := check(t, b, Options{})
	require.Equal(t, histories.Violation, res.Verdict)
	require.Contains(t, res.Anomalies, histories.Inconsistent)
	require.Contains(t, res.Findings[0].Text, `output id "m1/out1" was published with two contents`)
}

func TestCheckDownstreamPolicy(t *testing.T) {
	// An identical second copy (same id) is fine when downstream
	// deduplicates by id, a duplicate when it does not.
	b := (&builder{}).send("m1", "k1", "o1", model.AddItem, addA)
	processedA(b, 1).publish(0, "m1/out1", "k1", model.ItemAdded, itemA1).observe("o1", oneA)
	require.Equal(t, histories.Pass, check(t, b, Options{}).Verdict)
	res := check(t, b, Options{Downstream: DownstreamNone})
	require.Equal(t, histories.Violation, res.Verdict)
	require.Equal(t, []histories.Anomaly{histories.Duplicate}, res.Anomalies)
}

// realTime builds: k1 Confirm, then k2 AddItem(a,1). The observation is
// what the order k2, k1 gives. Whether that order is allowed depends on
// whether k1 ended before k2 was first delivered.
func realTime(overlap bool) *builder {
	b := (&builder{}).send("m1", "k1", "o1", model.Confirm, emptyObj).
		send("m2", "k2", "o1", model.AddItem, addA).
		deliver(1, "m1", "k1", "o1", model.Confirm, emptyObj)
	if overlap {
		b.deliver(2, "m2", "k2", "o1", model.AddItem, addA)
	}
	b.at(histories.Commit, 1).publish(1, "m1/out1", "k1", model.OrderConfirmed, `{"items":1}`).
		at(histories.Ack, 1).at(histories.Done, 1)
	if !overlap {
		b.deliver(2, "m2", "k2", "o1", model.AddItem, addA)
	}
	return b.at(histories.Commit, 2).
		publish(2, "m2/out1", "k2", model.ItemAdded, itemA1).
		publish(2, "m2/out2", "k2", model.FirstItemAdded, skuA).
		at(histories.Ack, 2).at(histories.Done, 2).
		observe("o1", `{"lines":{"a":1},"confirmed":true}`)
}

func TestCheckRealTime(t *testing.T) {
	require.Equal(t, histories.Pass, check(t, realTime(true), Options{}).Verdict, "overlapping attempts may be ordered either way")
	res := check(t, realTime(false), Options{})
	require.Equal(t, histories.Violation, res.Verdict, "k1 ended before k2 began: k1 must come first")
}

func TestCheckStuck(t *testing.T) {
	b := (&builder{}).send("m1", "k1", "o1", model.AddItem, addA).
		add(histories.Event{Kind: histories.Undrained, Process: "broker", Detail: "1 copy still queued"})
	res := check(t, b, Options{})
	require.Equal(t, histories.Violation, res.Verdict)
	require.Equal(t, []histories.Anomaly{histories.Stuck}, res.Anomalies)
}

func TestCheckMalformed(t *testing.T) {
	cases := map[string]*builder{
		"delivery of a message never sent": (&builder{}).deliver(1, "m9", "k9", "o1", model.AddItem, addA),
		"commit of an attempt never begun": (&builder{}).send("m1", "k1", "o1", model.AddItem, addA).at(histories.Commit, 4),
		"message the model rejects": (&builder{}).send("m1", "k1", "o1", "Teleport", emptyObj).
			observe("o1", oneA),
		"no observation": (&builder{}).send("m1", "k1", "o1", model.AddItem, addA),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Check(&b.h, model.Orders{}, Options{})
			require.ErrorIs(t, err, ErrMalformed)
		})
	}
}

// TestCheckStreamFromAFile: a history file checked as a stream gets the
// in-memory check's result, evidence included; a line that is no event is
// malformed, with its line; a file that cannot be read is not.
func TestCheckStreamFromAFile(t *testing.T) {
	b := appliedTwice()
	b.h.Header = histories.Header{Format: histories.Format, Version: histories.Version, Model: "orders"}
	dir := t.TempDir()
	path, err := histories.Save(&b.h, dir, "dup.jsonl")
	require.NoError(t, err)
	f, err := histories.Open(path)
	require.NoError(t, err)
	want := check(t, b, Options{})
	require.Equal(t, histories.Violation, want.Verdict)
	require.NotEmpty(t, want.Findings[0].Evidence)
	got, err := CheckStream(f, model.Orders{}, Options{})
	require.NoError(t, err)
	require.Equal(t, want, got)

	text, err := os.ReadFile(path)
	require.NoError(t, err)
	broken := filepath.Join(dir, "broken.jsonl")
	require.NoError(t, os.WriteFile(broken, bytes.Replace(text, []byte(`"kind":"commit"`), []byte(`"kind":"comit"`), 1), 0o644))
	bf, err := histories.Open(broken)
	require.NoError(t, err)
	_, err = CheckStream(bf, model.Orders{}, Options{})
	require.ErrorIs(t, err, ErrMalformed)
	require.ErrorContains(t, err, "broken.jsonl:4: unknown event kind")

	require.NoError(t, os.Remove(path))
	_, err = CheckStream(f, model.Orders{}, Options{})
	require.ErrorIs(t, err, os.ErrNotExist)
	require.NotErrorIs(t, err, ErrMalformed)
}

func TestCheckStateOfAnUntargetedAggregate(t *testing.T) {
	b := (&builder{}).send("m1", "k1", "o1", model.AddItem, addA)
	processedA(b, 1).observe("o1", oneA).observe("o2", oneA)
	res := check(t, b, Options{})
	require.Equal(t, histories.Violation, res.Verdict)
	require.Equal(t, []histories.Anomaly{histories.Inconsistent}, res.Anomalies)
	require.Contains(t, res.Findings[0].Text, "no message targets it")
}

func TestExplainOutOfOrder(t *testing.T) {
	// UserCreated(ann) then UserRenamed(bob), sent in that order, applied
	// the other way round: the final name is ann.
	created, renamed := `{"name":"ann"}`, `{"name":"bob"}`
	b := (&builder{}).send("m1", "k1", "u1", model.UserCreated, created).positioned(1).
		send("m2", "k2", "u1", model.UserRenamed, renamed).positioned(2).
		deliver(1, "m2", "k2", "u1", model.UserRenamed, renamed).positioned(2).at(histories.Commit, 1).at(histories.Ack, 1).at(histories.Done, 1).
		deliver(2, "m1", "k1", "u1", model.UserCreated, created).positioned(1).at(histories.Commit, 2).at(histories.Ack, 2).at(histories.Done, 2).
		observe("u1", `{"created":true,"name":"ann"}`)
	res, err := Check(&b.h, model.Profiles{}, Options{})
	require.NoError(t, err)
	require.Equal(t, histories.Violation, res.Verdict)
	require.Equal(t, []histories.Anomaly{histories.OutOfOrder}, res.Anomalies)
	f := res.Findings[0]
	require.Equal(t, `k2 (UserRenamed{"name":"bob"} to u1) took effect before k1 (UserCreated{"name":"ann"} to u1), which was sent before it; the effects on u1 match the order k2, k1`, f.Text)
	require.Equal(t, []int{1, 2}, f.Attempts)
	require.Equal(t, "attempt #1 (k2, from step 3): committed at step 4, acked; attempt #2 (k1, from step 7): committed at step 8, acked", f.Evidence)
	require.Contains(t, res.Expected, "  the observation first departs from it at the final state of u1")

	// Unordered, the same effects would be fine.
	_, err = Check(&b.h, model.Orders{}, Options{})
	require.Error(t, err, "profiles messages are no orders messages")
}

// profilesRun is a history of the ordered profiles model: UserCreated(ann)
// then UserRenamed(bob) to u1, at the given positions, each delivered,
// committed and acked in send order.
func profilesRun(first, second int64) *builder {
	created, renamed := `{"name":"ann"}`, `{"name":"bob"}`
	return (&builder{}).send("m1", "k1", "u1", model.UserCreated, created).positioned(first).
		send("m2", "k2", "u1", model.UserRenamed, renamed).positioned(second).
		deliver(1, "m1", "k1", "u1", model.UserCreated, created).positioned(first).at(histories.Commit, 1).at(histories.Ack, 1).at(histories.Done, 1).
		deliver(2, "m2", "k2", "u1", model.UserRenamed, renamed).positioned(second).at(histories.Commit, 2).at(histories.Ack, 2).at(histories.Done, 2).
		observe("u1", `{"created":true,"name":"bob"}`)
}

// TestPositionsFromAnyStart: an ordered model takes any strictly
// increasing positions per stream, from 0 (Kafka offsets), from a large
// number, with gaps, or negative.
func TestPositionsFromAnyStart(t *testing.T) {
	for _, p := range [][2]int64{{0, 1}, {1, 2}, {1000, 5000}, {-7, 0}} {
		res, err := Check(&profilesRun(p[0], p[1]).h, model.Profiles{}, Options{})
		require.NoError(t, err, "positions %v", p)
		require.Equal(t, histories.Pass, res.Verdict, "positions %v: %v", p, res.Findings)
	}
	// One message at position 0, alone: applied, not out of order.
	created := `{"name":"ann"}`
	b := (&builder{}).send("m1", "k1", "u1", model.UserCreated, created).
		deliver(1, "m1", "k1", "u1", model.UserCreated, created).at(histories.Commit, 1).at(histories.Ack, 1).at(histories.Done, 1).
		observe("u1", `{"created":true,"name":"ann"}`)
	res, err := Check(&b.h, model.Profiles{}, Options{})
	require.NoError(t, err)
	require.Equal(t, histories.Pass, res.Verdict, "%v", res.Findings)
}

// TestPositionsThatDoNotIncreaseAreAnInputError: positions that do not
// strictly increase in send order, or that are missing on more than one
// message of a stream, say nothing about the handler: the history is
// malformed.
func TestPositionsThatDoNotIncreaseAreAnInputError(t *testing.T) {
	for _, p := range [][2]int64{{0, 0}, {3, 3}, {5, 2}} {
		_, err := Check(&profilesRun(p[0], p[1]).h, model.Profiles{}, Options{})
		require.ErrorIs(t, err, ErrMalformed, "positions %v", p)
		require.ErrorContains(t, err, fmt.Sprintf("in u1, m2 (key k2) has position %d, sent after m1 (key k1) with position %d: positions must strictly increase in send order", p[1], p[0]))
	}
}

func TestExplanationsNameAttemptsAndSteps(t *testing.T) {
	b := (&builder{}).send("m1", "k1", "o1", model.AddItem, addA).
		deliver(1, "m1", "k1", "o1", model.AddItem, addA).at(histories.Commit, 1).
		add(histories.Event{Kind: histories.Crash, Attempt: 1, Point: "after-commit"}).
		deliver(2, "m1", "k1", "o1", model.AddItem, addA).at(histories.Ack, 2).at(histories.Done, 2).
		observe("o1", oneA)
	res := check(t, b, Options{})
	require.Equal(t, []histories.Anomaly{histories.Lost}, res.Anomalies)
	f := res.Findings[0]
	require.Equal(t, []int{1, 2}, f.Attempts)
	require.Equal(t, []int{2, 3, 4, 5, 6, 7}, f.Steps)
	require.Equal(t, "attempt #1 (k1, from step 2): committed at step 3, crashed at step 4 (after-commit); attempt #2 (k1, from step 5): acked", f.Evidence)
	require.Equal(t, []string{
		"o1: closest exactly-once order k1",
		`  k1 AddItem{"sku":"a","qty":1}: expected [FirstItemAdded{"sku":"a"}, ItemAdded{"qty":1,"sku":"a"}], observed [] [DIFFERS]`,
		`  final state: expected {"confirmed":false,"lines":{"a":1}}, observed {"confirmed":false,"lines":{"a":1}} [ok]`,
		`  the observation first departs from it at the outputs of k1 (AddItem{"sku":"a","qty":1} to o1)`,
		"  the simplest explanation (1 deviation from exactly-once) applies k1",
	}, res.Expected)
}

// TestAnalysisRefusesWhatValidateRefuses: the analysis checks, as it goes,
// what History.Validate checks, and reports Validate's error. On histories
// from the oracle's generator with a random corruption of their structure,
// the analysis refuses exactly those Validate refuses, with its error.
func TestAnalysisRefusesWhatValidateRefuses(t *testing.T) {
	kinds := []histories.Kind{histories.Send, histories.Deliver, histories.Begin, histories.Write, histories.Commit,
		histories.Abort, histories.Publish, histories.Ack, histories.AckLost, histories.Nack, histories.Done,
		histories.Crash, histories.Observe, histories.Requeue}
	refused := 0
	rapid.Check(t, func(t *rapid.T) {
		c := genOracleCase(t, model.Orders{})
		h := c.history
		for range rapid.IntRange(1, 3).Draw(t, "corruptions") {
			if len(h.Events) == 0 {
				break
			}
			i := rapid.IntRange(0, len(h.Events)-1).Draw(t, "event")
			ev := &h.Events[i]
			switch rapid.IntRange(0, 7).Draw(t, "corruption") {
			case 0:
				h.Events = append(h.Events[:i:i], h.Events[i+1:]...)
			case 1:
				h.Events = append(h.Events[:i+1:i+1], h.Events[i:]...)
			case 2:
				ev.Attempt = rapid.IntRange(-1, 12).Draw(t, "attempt")
			case 3:
				ev.Kind = rapid.SampledFrom(kinds).Draw(t, "kind")
			case 4:
				ev.Message = nil
			case 5:
				if ev.Message != nil {
					m := *ev.Message
					switch rapid.IntRange(0, 3).Draw(t, "field") {
					case 0:
						m.ID = ""
					case 1:
						m.Key = rapid.SampledFrom([]string{"", "k1", "k9"}).Draw(t, "key")
					case 2:
						m.Aggregate = ""
					default:
						m.Type = ""
					}
					ev.Message = &m
				}
			case 6:
				ev.Aggregate, ev.State = "", nil
			default:
				if ev.Message != nil {
					m := *ev.Message
					m.ID = rapid.SampledFrom([]string{"m1", "m2", "m9"}).Draw(t, "id")
					ev.Message = &m
				}
			}
		}
		for i := range h.Events {
			h.Events[i].Step = i + 1
		}
		verr := h.Validate()
		_, aerr := analyze(h, DownstreamDedupByID)
		if verr != nil {
			refused++
			if aerr == nil || aerr.Error() != verr.Error() {
				t.Fatalf("Validate refuses (%v) but the analysis says %v", verr, aerr)
			}
			return
		}
		if errors.Is(aerr, errInvalid) {
			t.Fatalf("the analysis refuses (%v) what Validate accepts", aerr)
		}
	})
	require.Positive(t, refused)
}

// TestAHistoryOfNoEventsIsMalformed: a history cut down to its header
// proves nothing; it is refused, never a pass.
func TestAHistoryOfNoEventsIsMalformed(t *testing.T) {
	_, err := Check(&histories.History{}, model.Orders{}, Options{})
	require.ErrorIs(t, err, ErrMalformed)
	require.ErrorContains(t, err, "no events")
}

// TestExplainRealTime: k1 ended before k2 was first delivered, but the
// outputs say k2 came first (k2 published FirstItemAdded, k1 did not): the
// one departure from exactly-once is real time, and the name says so.
func TestExplainRealTime(t *testing.T) {
	b := (&builder{}).send("m1", "k1", "o1", model.AddItem, addA).send("m2", "k2", "o1", model.AddItem, addB).
		deliver(1, "m1", "k1", "o1", model.AddItem, addA).at(histories.Commit, 1).
		publish(1, "m1/out1", "k1", model.ItemAdded, itemA1).
		at(histories.Ack, 1).at(histories.Done, 1).
		deliver(2, "m2", "k2", "o1", model.AddItem, addB).at(histories.Commit, 2).
		publish(2, "m2/out1", "k2", model.ItemAdded, `{"sku":"b","qty":2}`).
		publish(2, "m2/out2", "k2", model.FirstItemAdded, `{"sku":"b"}`).
		at(histories.Ack, 2).at(histories.Done, 2).
		observe("o1", `{"lines":{"a":1,"b":2},"confirmed":false}`)
	res := check(t, b, Options{})
	require.Equal(t, histories.Violation, res.Verdict)
	require.Equal(t, []histories.Anomaly{histories.RealTime}, res.Anomalies)
	f := res.Findings[0]
	require.Equal(t, []string{"k2", "k1"}, f.Keys)
	require.Equal(t, `k2 (AddItem{"sku":"b","qty":2} to o1) took effect before k1 (AddItem{"sku":"a","qty":1} to o1), although every attempt at k1 had ended (step 7) before k2 was first delivered (step 8); the effects on o1 match the order k2, k1`, f.Text)
}
