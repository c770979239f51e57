package dedupmarklast_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters/dedupmarklast"
	"github.com/oncecheck/oncecheck/adapters/strategytest"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// TestDedupMarkLastSurvivesReorderingAndCompetingConsumers holds that
// dedup-mark-last passes campaigns of reorders and of competing consumers.
func TestDedupMarkLastSurvivesReorderingAndCompetingConsumers(t *testing.T) {
	strategytest.Survives(t, dedupmarklast.Strategy(), model.Orders{}, faults.Reorder, faults.Concurrent)
}

// TestDedupMarkLastAppliesTheWorkAgainBeforeTheMark holds that a crash or
// publish failure between the work's commit and the mark's applies the message
// again: duplicate.
func TestDedupMarkLastAppliesTheWorkAgainBeforeTheMark(t *testing.T) {
	cases := []struct {
		name  string
		fault faults.Fault
	}{
		// The first commit of the attempt is the work's.
		{"crash after the work's commit", strategytest.Crash(0, faults.AfterCommit)},
		{"crash after the last publish", strategytest.CrashAt(0, faults.AfterPublish, 1)},
		// Write #1 is the state, write #2 the mark.
		{"crash after the mark's write", strategytest.CrashAt(0, faults.AfterWrite, 1)},
		{"publish failure", faults.Fault{Kind: faults.PublishFailure, Variant: faults.Rejected, Process: faults.Consumer}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, string(histories.Duplicate), strategytest.Expected(t, dedupmarklast.Name, model.Orders{}, c.fault.Kind))
			res := strategytest.Execute(t, dedupmarklast.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{c.fault}})
			strategytest.Violates(t, res, histories.Duplicate, "applied twice")
		})
	}
}

// TestDedupMarkLastLetsTwoConsumersPassTheCheck holds that two consumers
// holding copies of one message both pass the check before either marks:
// duplicate.
func TestDedupMarkLastLetsTwoConsumersPassTheCheck(t *testing.T) {
	require.Contains(t, strategytest.Expected(t, dedupmarklast.Name, model.Orders{}, faults.Redelivery), string(histories.Duplicate))
	// Consumer 1's lease expires after its commit (its step #7: its two
	// reads are steps too), and consumer 2 takes the copy there.
	res := strategytest.Execute(t, dedupmarklast.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Consumers: 2, Faults: []faults.Fault{
		{Kind: faults.Redelivery, Variant: faults.LeaseExpired, Index: 6},
	}})
	// Applied twice; the second attempt's output reuses the first's id
	// with another content, which the check also reports (the content
	// kept under the id makes the first one's count as not published).
	require.Contains(t, res.Anomalies, histories.Duplicate, "%v", res.Findings)
	require.Contains(t, fmt.Sprint(res.Findings), "applied twice")
	// The second attempt's output reused the first's id with another
	// content: it was published, and never reached downstream, which
	// keeps the first copy of an id. No finding may say it was never
	// published.
	require.NotContains(t, fmt.Sprint(res.Findings), "never published")
	for _, f := range res.Findings {
		if f.Anomaly == histories.Lost {
			require.Contains(t, f.Text, "never reached downstream")
			require.Contains(t, f.Text, "had taken with another content")
		}
	}
}

// TestDedupMarkLastAppliesAReissueAgain holds that dedup-mark-last keys on the
// message id, so a re-issue is applied again: duplicate.
func TestDedupMarkLastAppliesAReissueAgain(t *testing.T) {
	require.Equal(t, string(histories.Duplicate), strategytest.Expected(t, dedupmarklast.Name, model.Orders{}, faults.Reissue))
	res := strategytest.Execute(t, dedupmarklast.Strategy(), model.Orders{}, model.Workload{strategytest.AddItem("o1", "a")}, faults.Plan{Faults: []faults.Fault{{Kind: faults.Reissue, At: 0, Index: 0}}})
	strategytest.Violates(t, res, histories.Duplicate, "applied twice")
}
