package oncecheck

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/campaign"
	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/histories"
)

// The regression corpus (histories/testdata/corpus, `make corpus`) holds a
// shrunk counterexample for every unsafe cell of the matrix and passing
// histories. Each records in its header the verdict and anomalies of the
// run that saved it.

func corpus(t *testing.T) []string {
	files, err := filepath.Glob("histories/testdata/corpus/*.jsonl")
	require.NoError(t, err)
	require.NotEmpty(t, files, "run make corpus")
	// Histories saved before format 1.2, when reads were not scheduling
	// points: they replay without read points, event for event.
	old, err := filepath.Glob("histories/testdata/before-1.2/*.jsonl")
	require.NoError(t, err)
	require.NotEmpty(t, old)
	for _, f := range old {
		h, err := histories.Load(f)
		require.NoError(t, err, f)
		require.NotEqual(t, histories.Version, h.Header.Version, f)
		require.False(t, h.Header.ReadsPreempt, f)
		require.NotEmpty(t, h.Header.Plan.Faults, f)
	}
	// Histories saved at format 1.2, with competing consumers or
	// redeliveries: they replay as they ran, a write that met a lock
	// failing at once and a lease expiring as its copy was delivered.
	before13, err := filepath.Glob("histories/testdata/before-1.3/*.jsonl")
	require.NoError(t, err)
	require.NotEmpty(t, before13)
	for _, f := range before13 {
		h, err := histories.Load(f)
		require.NoError(t, err, f)
		require.Equal(t, "1.2", h.Header.Version, f)
		require.True(t, h.Header.Before13(), f)
	}
	return append(append(files, old...), before13...)
}

func resultOutcome(res checkers.Result) (histories.Verdict, []histories.Anomaly) {
	anomalies := append([]histories.Anomaly{}, res.Anomalies...)
	slices.Sort(anomalies)
	return res.Verdict, anomalies
}

func recorded(h *histories.History) (histories.Verdict, []histories.Anomaly) {
	anomalies := append([]histories.Anomaly{}, h.Header.Anomalies...)
	slices.Sort(anomalies)
	return h.Header.Verdict, anomalies
}

func TestCorpusChecksToItsRecordedVerdict(t *testing.T) {
	verdicts := map[histories.Verdict]int{}
	for _, file := range corpus(t) {
		h, err := histories.Load(file)
		require.NoError(t, err, file)
		res, err := Check(h, CheckOptions{})
		require.NoError(t, err, file)
		wantVerdict, wantAnomalies := recorded(h)
		gotVerdict, gotAnomalies := resultOutcome(res)
		require.Equal(t, wantVerdict, gotVerdict, file)
		require.Equal(t, wantAnomalies, gotAnomalies, file)
		verdicts[gotVerdict]++

		// Streamed from the file, the check says the same, word for word.
		f, err := histories.Open(file)
		require.NoError(t, err, file)
		streamed, err := CheckFile(f, CheckOptions{})
		require.NoError(t, err, file)
		require.Equal(t, res, streamed, file)
		require.Equal(t, len(h.Events), f.Len(), file)
	}
	require.NotZero(t, verdicts[histories.Pass])
	require.NotZero(t, verdicts[histories.Violation])
}

func TestCorpusReplaysToItsRecordedVerdict(t *testing.T) {
	expected, err := campaign.LoadExpectedMatrix("expected/matrix.json")
	require.NoError(t, err)
	identical, outboxSurvived := 0, 0
	files := corpus(t)
	for _, file := range files {
		h, err := histories.Load(file)
		require.NoError(t, err, file)
		replayed, res, err := Replay(h, ReplayOptions{})
		require.NoError(t, err, file)
		wantVerdict, wantAnomalies := recorded(h)
		gotVerdict, gotAnomalies := resultOutcome(res)
		require.Equal(t, wantVerdict, gotVerdict, file)
		require.Equal(t, wantAnomalies, gotAnomalies, file)
		if histories.FirstDifference(h.Events, replayed.Events) == 0 {
			identical++
		}

		// "Would the outbox have survived this?" Where the matrix says the
		// outbox survives the fault kinds of a dedup counterexample, it
		// must survive the counterexample itself.
		if h.Header.Strategy != "dedup" {
			continue
		}
		column := "all"
		if len(h.Header.Faults) == 1 {
			column = string(h.Header.Faults[0])
		}
		if expected[h.Header.Model]["outbox"][column] != "pass" {
			continue
		}
		_, res, err = Replay(h, ReplayOptions{Strategy: "outbox"})
		require.NoError(t, err, file)
		require.Equal(t, histories.Pass, res.Verdict, "%s on outbox: %v", file, res.Findings)
		outboxSurvived++
	}
	require.NotZero(t, outboxSurvived)
	require.Equal(t, len(files), identical, "every history replays event for event")
}
