package checkers_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/campaign"
	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// unlockedReadModifyWrite reads the aggregate's state without a lock,
// applies the message and writes the state back in one transaction, then
// publishes and acks: under read committed, two consumers that read the
// same state both write, and one change is lost.
type unlockedReadModifyWrite struct{ strategykit.StateObserver }

func (unlockedReadModifyWrite) Handle(env adapters.Env, msg model.Message) error {
	tx, err := env.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	st := env.Model().Initial(msg.Aggregate)
	v, ok, err := tx.Get(strategykit.StateTable, msg.Aggregate)
	if err != nil {
		return err
	}
	if ok {
		st = v
	}
	next, outs, err := env.Model().Apply(st, msg)
	if err != nil {
		return err
	}
	if err := strategykit.SaveState(tx, msg.Aggregate, next); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if err := env.Publish(strategykit.OutputMessages(outs, msg, func(i int) string { return strategykit.KeyDerivedID(msg, i) })...); err != nil {
		return err
	}
	return env.Ack()
}

// TestLostUpdatesAgreeWithOracle: on histories of the unlocked
// read-modify-write with competing consumers (and all faults), the
// checker's verdict and names equal the oracle's, no finding contradicts
// its history, and the lost updates named are those the events show.
func TestLostUpdatesAgreeWithOracle(t *testing.T) {
	runs := 4000
	if testing.Short() {
		runs = 1000
	}
	strategy := adapters.Strategy{Name: "read-modify-write", NewHandler: func() adapters.Handler { return unlockedReadModifyWrite{} }}
	var named, lost, violations, tampered int
	for _, kinds := range [][]faults.Kind{{faults.Concurrent}, faults.AllKinds} {
		tr, err := campaign.New(campaign.Config{Strategy: strategy, Faults: kinds})
		require.NoError(t, err)
		t.Cleanup(func() { _ = tr.Close() })
		for seed := uint64(1); seed <= uint64(runs/2); seed++ {
			h, res, err := tr.Execute(tr.Generate(seed), seed)
			require.NoError(t, err)
			if res.Verdict == histories.Inconclusive {
				continue
			}
			name := fmt.Sprintf("%v seed %d", kinds, seed)
			wantVerdict, wantNames := oracleCheck(model.Orders{}, h, checkers.Downstream(h.Header.Downstream))
			require.Equal(t, wantVerdict, res.Verdict, name)
			if res.Verdict != histories.Violation {
				continue
			}
			violations++
			got := slices.Clone(res.Anomalies)
			slices.Sort(got)
			require.Equal(t, wantNames, got, name)
			for _, f := range res.Findings {
				require.Empty(t, contradiction(h, f), "%s: %s", name, f.Text)
				if f.Anomaly == histories.Lost {
					lost++
				}
				if strings.Contains(f.Text, "a lost update: ") {
					named++
					tampered += tamperedLostUpdates(t, h, f)
				}
			}
		}
	}
	t.Logf("%d violations, %d lost findings, %d of them name a lost update; %d tampered texts caught", violations, lost, named, tampered)
	require.Positive(t, named, "some findings name a lost update")
}

// tamperedLostUpdates checks that contradiction catches a lost update's
// text changed: the messages swapped, a step moved; it returns how many
// tampered texts it tried.
func tamperedLostUpdates(t *testing.T, h *histories.History, f checkers.Finding) int {
	t.Helper()
	m := lostUpdateClaim.FindStringSubmatch(f.Text)
	require.NotNil(t, m, f.Text)
	over, under := m[1], m[4]
	swapped := f
	swapped.Keys = []string{over, under}
	swapped.Text = strings.NewReplacer(over+"'s", under+"'s", under+"'s", over+"'s").Replace(f.Text)
	moved := f
	moved.Text = strings.Replace(f.Text, "committed at step "+m[8], fmt.Sprintf("committed at step %s0", m[8]), 1)
	for _, g := range []checkers.Finding{swapped, moved} {
		require.NotEmpty(t, contradiction(h, g), g.Text)
	}
	return 2
}
