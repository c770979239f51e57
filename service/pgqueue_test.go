package service

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/model"
)

// TestPublishNumbersAsBeforePublish: a crash after-publish at an
// attempt's output number i strikes at the commit of the output whose
// insert got number i, as a crash before-publish counts them: an output
// of a transaction rolled back keeps its number.
func TestPublishNumbersAsBeforePublish(t *testing.T) {
	m := model.Message{ID: "m1", Key: "k1", Aggregate: "o1", Type: model.AddItem}
	rn := &run{sent: map[string]model.Message{"m1": m}}
	p := &proc{}
	a := &attempt{n: 1, proc: p, msg: m, faults: []faults.Fault{{Kind: faults.Crash, Point: faults.AfterPublish, Index: 1}}}
	out := pgNotice{Kind: "output", ID: "k1/0", Type: "ItemAdded", Cause: "k1"}
	// Insert 0 rolled back; insert 1 is the attempt's first committed.
	_, ok := rn.publishRow(p, scopedOutput{a: a, index: 1, out: out}, "db connection 1")
	require.True(t, ok, "the output numbered 1 strikes")
	_, ok = rn.publishRow(p, scopedOutput{a: a, index: 0, out: out}, "db connection 1")
	require.False(t, ok)
}
