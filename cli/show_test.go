package cli

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/report"
)

// TestShowStreamsWhatTheLoadedHistoryShows holds show, which streams a
// history from its file, to what it printed when it loaded the history
// whole: report.Text on the loaded history and its check, and the JSON
// object encoding/json wrote from them, byte for byte, on passing and
// failing histories of the corpus.
func TestShowStreamsWhatTheLoadedHistoryShows(t *testing.T) {
	files, err := filepath.Glob("../histories/testdata/corpus/*.jsonl")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	verdicts := map[histories.Verdict]int{}
	for i, file := range files {
		h, err := histories.Load(file)
		require.NoError(t, err)
		if i%15 != 0 && (h.Header.Verdict != histories.Pass || verdicts[histories.Pass] > 0) {
			continue // a sample, with a passing history in it
		}
		res, err := oncecheck.Check(h, oncecheck.CheckOptions{})
		require.NoError(t, err, file)
		verdicts[res.Verdict]++

		var text bytes.Buffer
		require.NoError(t, report.Text(&text, file, h, res))
		code, out, stderr := cli(t, "show", file)
		require.Equal(t, exitCode(res.Verdict), code, stderr)
		require.Equal(t, text.String(), out, file)

		var js bytes.Buffer
		require.NoError(t, json.NewEncoder(&js).Encode(struct {
			Header histories.Header  `json:"header"`
			Events []histories.Event `json:"events"`
			Check  verdictJSON       `json:"check"`
		}{h.Header, h.Events, newVerdictJSON(file, res)}))
		code, out, stderr = cli(t, "show", "--json", file)
		require.Equal(t, exitCode(res.Verdict), code, stderr)
		require.Equal(t, js.String(), out, file)
	}
	require.Positive(t, verdicts[histories.Pass], "a passing history is among them")
	require.Greater(t, verdicts[histories.Violation], 5, "failing histories are among them")
}

// TestTextStreamIsText: report.TextStream on a history file writes what
// report.Text writes on the history loaded whole.
func TestTextStreamIsText(t *testing.T) {
	const file = "../histories/testdata/corpus/publish-first-orders-crash-ghost-mem-15.jsonl"
	h, err := histories.Load(file)
	require.NoError(t, err)
	f, err := histories.Open(file)
	require.NoError(t, err)
	res, err := oncecheck.CheckFile(f, oncecheck.CheckOptions{})
	require.NoError(t, err)
	require.Equal(t, histories.Violation, res.Verdict)
	var loaded, streamed bytes.Buffer
	require.NoError(t, report.Text(&loaded, "h", h, res))
	require.NoError(t, report.TextStream(&streamed, "h", f.Header, f, res))
	require.Equal(t, loaded.String(), streamed.String())
	require.Contains(t, streamed.String(), "!! #1 CRASH at before-commit")
}
