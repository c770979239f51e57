package service

import (
	"testing"

	"github.com/stretchr/testify/require"

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
