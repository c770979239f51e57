package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
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

// TestShowNamesTheFaultOfAServiceFinding: show of a service-mode history
// adds to each finding the fault that struck its messages, with the
// process, the boundary and the statement (service.Explain), as
// oncecheck service printed it, in text, HTML and JSON alike.
func TestShowNamesTheFaultOfAServiceFinding(t *testing.T) {
	m := model.Message{ID: "m1", Key: "k1", Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)}
	h := &histories.History{
		Header: histories.Header{Format: histories.Format, Version: histories.Version, Tool: "service mode on nats", Model: "orders",
			Strategy: "service", Backend: "pg", Downstream: "dedup-by-id", FreeRunning: true, Workload: model.Workload{m},
			Plan: faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Crash, Process: faults.Consumer, Point: faults.AfterWrite}}}},
		Events: []histories.Event{
			{Step: 1, Kind: histories.Send, Process: "sender", Message: &m},
			{Step: 2, Kind: histories.Deliver, Attempt: 1, Process: "consumer-1", Message: &m},
			{Step: 3, Kind: histories.Write, Attempt: 1, Tx: 1, Process: "consumer-1", Detail: "INSERT INTO inbox (key) VALUES ($1) (INSERT 0 1, db connection 1 of consumer-1, step 3)"},
			{Step: 4, Kind: histories.Crash, Attempt: 1, Process: "consumer-1", Point: string(faults.AfterWrite), Fault: string(faults.Crash),
				Detail: "SIGKILL: SIGKILL the consumer of delivery #1 after the server ran its SQL write #1, before it sees the reply; the statement: INSERT INTO inbox (key) VALUES ($1) (INSERT 0 1), its reply held, on db connection 1 of consumer-1, tx1"},
			{Step: 5, Kind: histories.Drain, Process: "broker"},
			{Step: 6, Kind: histories.Observe, Aggregate: "o1", State: model.Orders{}.Initial("o1")},
		},
	}
	dir := t.TempDir()
	file, err := histories.Save(h, dir, "service.jsonl")
	require.NoError(t, err)
	const sentence = "The fault that struck it: step 4, consumer-1, in attempt #1 (k1), at the boundary after-write: " +
		"SIGKILL the consumer of delivery #1 after the server ran its SQL write #1, before it sees the reply; " +
		"the statement: INSERT INTO inbox (key) VALUES ($1) (INSERT 0 1), its reply held, on db connection 1 of consumer-1, tx1."
	code, out, stderr := cli(t, "show", file)
	require.Equal(t, exitViolation, code, stderr)
	require.Contains(t, out, "  lost: k1 ")
	require.Contains(t, out, sentence)
	code, out, stderr = cli(t, "show", "--json", file)
	require.Equal(t, exitViolation, code, stderr)
	require.Contains(t, out, sentence, "the sentence has nothing JSON escapes")
	page := filepath.Join(dir, "report.html")
	code, _, stderr = cli(t, "show", "--html", page, file)
	require.Equal(t, exitViolation, code, stderr)
	html, err := os.ReadFile(page)
	require.NoError(t, err)
	require.Contains(t, string(html), "The fault that struck it: step 4, consumer-1, in attempt #1 (k1), at the boundary after-write")
}
