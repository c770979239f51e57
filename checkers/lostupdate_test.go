package checkers

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// tx adds a transaction event of an attempt.
func (b *builder) tx(kind histories.Kind, attempt, tx int, detail string) *builder {
	return b.add(histories.Event{Kind: kind, Process: "consumer-1", Attempt: attempt, Tx: tx, Detail: detail})
}

// published adds the end of an attempt: its outputs (type, payload) under
// ids key/out1, key/out2, ..., its ack, its end.
func (b *builder) published(attempt int, key string, outs ...[2]string) *builder {
	for i, o := range outs {
		b.publish(attempt, key+"/out"+string(rune('1'+i)), key, o[0], o[1])
	}
	return b.at(histories.Ack, attempt).at(histories.Done, attempt)
}

var firstA = [][2]string{{model.ItemAdded, itemA1}, {model.FirstItemAdded, skuA}}

// overlapping is the history of two consumers that read o1 unlocked: k1's
// transaction (tx1) begins at step 4 and is preempted; k2's (tx2) writes
// o1 and commits at step 9; then tx1 writes o1 at step 14 and commits at
// step 15. k2 adds payload2; final is o1's observed state.
func overlapping(payload2 string, outs2 [][2]string, final string) *builder {
	return overlappingWith(firstA, payload2, outs2, final)
}

// overlappingWith is overlapping where k1 publishes outs1.
func overlappingWith(outs1 [][2]string, payload2 string, outs2 [][2]string, final string) *builder {
	b := (&builder{}).send("m1", "k1", "o1", model.AddItem, addA).send("m2", "k2", "o1", model.AddItem, payload2).
		deliver(1, "m1", "k1", "o1", model.AddItem, addA).tx(histories.Begin, 1, 1, "").
		add(histories.Event{Kind: histories.Switch, Process: "consumer-1", Attempt: 1, Detail: "preempted: consumer-2 runs"}).
		deliver(2, "m2", "k2", "o1", model.AddItem, payload2).tx(histories.Begin, 2, 2, "").
		tx(histories.Write, 2, 2, "state/o1").tx(histories.Commit, 2, 2, "state/o1")
	b.published(2, "k2", outs2...).
		tx(histories.Write, 1, 1, "state/o1").tx(histories.Commit, 1, 1, "state/o1").
		published(1, "k1", outs1...)
	return b.observe("o1", final)
}

const k1OverK2 = "a lost update: k1's transaction (tx1, begun at step 4, before k2's commit at step 9) " +
	"wrote state/o1 at step 14 and committed at step 15, over k2's change (tx2); it based its write on a state from before that commit"

// TestALostUpdateIsNamed: of two messages with the same change, either
// left out explains the final state; the lost update is the change of the
// earlier committer (k2), overwritten by the later one (k1).
func TestALostUpdateIsNamed(t *testing.T) {
	res := check(t, overlapping(addA, firstA, oneA), Options{})
	require.Equal(t, []histories.Anomaly{histories.Lost}, res.Anomalies)
	require.Len(t, res.Findings, 1)
	f := res.Findings[0]
	require.Equal(t, []string{"k2", "k1"}, f.Keys, "the overwritten message, then the overwriting one")
	require.True(t, strings.HasPrefix(f.Text, `k2 (AddItem{"sku":"a","qty":1} to o1) published`), f.Text)
	require.True(t, strings.HasSuffix(f.Text, "; "+k1OverK2), f.Text)
	require.Equal(t, []int{1, 2}, f.Attempts, "the evidence tells both attempts")
	require.Contains(t, res.Expected, "  the simplest explanation (1 deviation from exactly-once) applies k1")
}

// TestALostUpdateOfAnotherChange: k2 adds another line, which the final
// state lacks; no tie, the same lost update.
func TestALostUpdateOfAnotherChange(t *testing.T) {
	res := check(t, overlapping(addB, [][2]string{{model.ItemAdded, addB}, {model.FirstItemAdded, `{"sku":"b"}`}}, oneA), Options{})
	require.Equal(t, []histories.Anomaly{histories.Lost}, res.Anomalies)
	require.Equal(t, []string{"k2", "k1"}, res.Findings[0].Keys)
	require.Contains(t, res.Findings[0].Text, "over k2's change (tx2)")
}

// TestALostUpdateWithoutTxNumbers: a history whose transactions carry no
// numbers names them by their attempts' messages alone.
func TestALostUpdateWithoutTxNumbers(t *testing.T) {
	b := overlapping(addA, firstA, oneA)
	for i := range b.h.Events {
		b.h.Events[i].Tx = 0
	}
	res := check(t, b, Options{})
	require.Equal(t, []string{"k2", "k1"}, res.Findings[0].Keys)
	require.Contains(t, res.Findings[0].Text, "a lost update: k1's transaction (begun at step 4, before k2's commit at step 9) "+
		"wrote state/o1 at step 14 and committed at step 15, over k2's change; it based")
}

// TestNoLostUpdateSentence: where the transactions overlap but the
// anomaly is something else, or the final state keeps the earlier
// committer's change, no finding tells a lost update.
func TestNoLostUpdateSentence(t *testing.T) {
	two := `{"lines":{"a":2},"confirmed":false}`
	second := [][2]string{{model.ItemAdded, `{"sku":"a","qty":2}`}} // k1's outputs after k2's
	cases := map[string]struct {
		b     *builder
		names []histories.Anomaly
		keys  []string
	}{
		// k1 read after k2's commit: both changes are there; k2's
		// redelivery applied it again.
		"duplicate": {overlappingWith(second, addA, firstA, `{"lines":{"a":3},"confirmed":false}`).
			deliver(3, "m2", "k2", "o1", model.AddItem, addA).tx(histories.Begin, 3, 3, "").
			tx(histories.Write, 3, 3, "state/o1").tx(histories.Commit, 3, 3, "state/o1").
			at(histories.Ack, 3).at(histories.Done, 3), []histories.Anomaly{histories.Duplicate}, []string{"k2"}},
		// Both changes are there; k3, acked and crashed, had no effect.
		"another message lost": {func() *builder {
			b := overlappingWith(second, addA, firstA, two)
			b.h.Events = b.h.Events[:len(b.h.Events)-1]
			return b.send("m3", "k3", "o1", model.AddItem, addB).
				deliver(3, "m3", "k3", "o1", model.AddItem, addB).at(histories.Ack, 3).at(histories.Crash, 3).
				observe("o1", two)
		}(), []histories.Anomaly{histories.Lost}, []string{"k3"}},
		// The final state has k2's change and not k1's, although k1
		// committed later: k1 is lost, and no lost update explains it.
		"the later committer lost": {overlapping(addB, [][2]string{{model.ItemAdded, addB}, {model.FirstItemAdded, `{"sku":"b"}`}},
			`{"lines":{"b":2},"confirmed":false}`), []histories.Anomaly{histories.Lost}, []string{"k1"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			res := check(t, c.b, Options{})
			require.Equal(t, c.names, res.Anomalies, "%v", res.Findings)
			require.Len(t, res.Findings, 1)
			require.Equal(t, c.keys, res.Findings[0].Keys)
			require.NotContains(t, res.Findings[0].Text, "lost update")
		})
	}
}
