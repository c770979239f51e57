package campaign

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/oncecheck/oncecheck/faults"
)

// TestExampleIsTheFirstCaseOfACheck pins what shrinking rests on (see
// rapid.go): rapid.Check with -rapid.seed=N draws first the case that
// Example(N) returns, for the generator of a campaign.
func TestExampleIsTheFirstCaseOfACheck(t *testing.T) {
	tester, err := New(Config{Strategy: strat("outbox"), Faults: faults.AllKinds})
	require.NoError(t, err)
	for seed := uint64(1); seed <= 30; seed++ {
		want := example(tester.gen, seed)
		var first *Case
		require.NoError(t, shrinkFrom(seed, time.Second, func(rt *rapid.T) {
			c := tester.gen.Draw(rt, "case")
			if first == nil {
				first = &c
			}
		}))
		require.NotNil(t, first, "seed %d: the check drew no case", seed)
		require.Equal(t, want, *first, "seed %d: rapid.Check's first case is not rapid.Example's: shrinking would start from another case", seed)
	}
}
