package oncecheck

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters/naive"
	"github.com/oncecheck/oncecheck/campaign"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// TestALogBrokerHistoryReplaysEventForEvent: a history saved on the log
// broker says so in its header and replays on it, event for event; told
// to, a replay runs the same plan on the queue instead.
func TestALogBrokerHistoryReplaysEventForEvent(t *testing.T) {
	tester, err := campaign.New(campaign.Config{Strategy: naive.Strategy(), Faults: []faults.Kind{faults.Crash}, Broker: "log"})
	require.NoError(t, err)
	defer tester.Close()
	rep, err := tester.Search(context.Background(), campaign.SearchOptions{Runs: 200, Seed: 3, Out: t.TempDir()})
	require.NoError(t, err)
	require.Equal(t, histories.Violation, rep.Verdict)
	saved, err := histories.Load(rep.Path)
	require.NoError(t, err)
	require.Equal(t, "log", saved.Header.Broker)
	replayed, res, err := Replay(saved, ReplayOptions{})
	require.NoError(t, err)
	require.Equal(t, saved.Events, replayed.Events)
	require.Equal(t, rep.Result.Signature(), res.Signature())

	onQueue, _, err := Replay(saved, ReplayOptions{Broker: "queue"})
	require.NoError(t, err)
	require.Empty(t, onQueue.Header.Broker)
	require.NotEqual(t, saved.Events, onQueue.Events)
}

// TestVerifyOnTheLogBroker: Spec.Broker picks the broker. sequence loses a
// message on a crash on the queue (the crashed copy is requeued behind
// later ones) and keeps order on the log, where a partition restarts from
// its committed offset.
func TestVerifyOnTheLogBroker(t *testing.T) {
	t.Parallel()
	spec := Spec{Model: model.Orders{}, Strategy: strategyNamed(t, "sequence"), Faults: []faults.Kind{faults.Crash}, Runs: 100, Seed: 1, Out: t.TempDir()}
	r := &recorder{name: "TestSequence"}
	spec.Broker = "log"
	Verify(r, spec)
	require.Empty(t, r.errors)
	require.Len(t, r.logs, 1)
	require.Contains(t, r.logs[0], "sequence is exactly-once over 100 runs")

	r = &recorder{name: "TestSequence"}
	spec.Broker = ""
	Verify(r, spec)
	require.Len(t, r.errors, 1)
	require.Contains(t, r.errors[0], "sequence is not exactly-once: lost")

	r = &recorder{name: "TestSequence"}
	spec.Broker = "kafka"
	Verify(r, spec)
	require.Len(t, r.errors, 1)
	require.Contains(t, r.errors[0], `unknown broker "kafka"`)
}
