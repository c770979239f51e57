package waitsfor

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNoCycleNoVictim(t *testing.T) {
	var g Graph[string]
	_, dead := g.Wait("a", "b")
	require.False(t, dead)
	_, dead = g.Wait("b", "c")
	require.False(t, dead)
	require.Equal(t, []string{"a"}, g.Waiters("b"))
}

func TestTheFirstWaiterOfACycleIsTheVictim(t *testing.T) {
	var g Graph[string]
	_, dead := g.Wait("a", "b") // a waits first
	require.False(t, dead)
	_, dead = g.Wait("c", "a")
	require.False(t, dead)
	victim, dead := g.Wait("b", "c") // closes b -> c -> a -> b
	require.True(t, dead)
	require.Equal(t, "a", victim)
	_, waiting := g.Holder("a")
	require.False(t, waiting, "the victim's wait is removed")
	h, _ := g.Holder("b")
	require.Equal(t, "c", h)
}

func TestTwoWayDeadlock(t *testing.T) {
	var g Graph[int]
	_, dead := g.Wait(1, 2)
	require.False(t, dead)
	victim, dead := g.Wait(2, 1)
	require.True(t, dead)
	require.Equal(t, 1, victim)
}

func TestWaitersInOrder(t *testing.T) {
	var g Graph[int]
	for _, w := range []int{5, 3, 9, 1} {
		g.Wait(w, 0)
	}
	require.Equal(t, []int{5, 3, 9, 1}, g.Waiters(0))
	g.Done(3)
	require.Equal(t, []int{5, 9, 1}, g.Waiters(0))
}
