package histories

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/model"
)

func sample() *History {
	m := model.Message{ID: "m1", Key: "k1", Aggregate: "o1", Type: "AddItem", Payload: json.RawMessage(`{"sku":"a","qty":1}`), Position: 1}
	return &History{
		Header: Header{Format: Format, Version: Version, Tool: "test", Seed: 42, Model: "orders", Strategy: "naive", Backend: "mem",
			Workload: model.Workload{m}, Plan: faults.Plan{Faults: []faults.Fault{{Kind: faults.Redelivery, At: 0}}}},
		Events: []Event{
			{Step: 1, Kind: Send, Process: "sender", Message: &m},
			{Step: 2, Kind: Deliver, Process: "consumer-1", Attempt: 1, Message: &m},
			{Step: 3, Kind: Observe, Process: "observer", Aggregate: "o1", State: model.State(`{"lines":{}}`)},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := sample()
		w := model.Orders{}.Workload(5).Draw(t, "workload")
		h.Header.Workload = w
		h.Events = nil
		for i := range w {
			h.Events = append(h.Events, Event{Step: i + 1, Kind: Send, Process: rapid.String().Draw(t, "process"), Message: &w[i],
				Detail: rapid.String().Draw(t, "detail")})
		}
		for i, agg := range w.Aggregates() {
			h.Events = append(h.Events, Event{Step: len(w) + i + 1, Kind: Observe, Aggregate: agg,
				State: model.State(fmt.Sprintf(`{"n":%d}`, rapid.Int().Draw(t, "n")))})
		}
		var buf bytes.Buffer
		require.NoError(t, h.Encode(&buf))
		back, err := Decode(&buf, "mem")
		require.NoError(t, err)
		require.Equal(t, h.Hash(), back.Hash())
		require.Equal(t, h.Header.Workload, back.Header.Workload)
	})
}

// brokenHistories are history files with something wrong, each with the
// words its error must contain.
func brokenHistories(t *testing.T) map[string]struct{ text, want string } {
	var good bytes.Buffer
	require.NoError(t, sample().Encode(&good))
	lines := strings.Split(strings.TrimSpace(good.String()), "\n")
	cases := map[string]struct {
		text string
		want string
	}{
		"empty":                  {"", "x.jsonl:1: empty file"},
		"not json":               {"hello\n", "x.jsonl:1: header:"},
		"wrong format":           {`{"format":"other","version":"1.0","model":"orders"}` + "\n", `format is "other"`},
		"newer major":            {strings.Replace(lines[0], `"version":"`+Version+`"`, `"version":"2.0"`, 1) + "\n", "format version 2.0 is newer"},
		"unknown kind":           {lines[0] + "\n" + `{"step":1,"kind":"teleport"}` + "\n", `x.jsonl:2: unknown event kind "teleport"`},
		"wrong field type":       {lines[0] + "\n" + `{"step":"one","kind":"send"}` + "\n", "x.jsonl:2: event:"},
		"unknown field":          {lines[0] + "\n" + `{"step":1,"kind":"send","colour":"red"}` + "\n", `x.jsonl:2: event: json: unknown field "colour"`},
		"steps out of order":     {lines[0] + "\n" + lines[2] + "\n" + lines[1] + "\n", "x.jsonl:3: event step 1 after step 2"},
		"truncated line":         {lines[0] + "\n" + lines[1][:len(lines[1])/2] + "\n", "x.jsonl:2: event:"},
		"downstream typo":        {addToHeader(lines[0], `"downstream":"nonee"`) + "\n", `x.jsonl:1: header: "downstream" is "nonee"`},
		"downstream in capitals": {addToHeader(lines[0], `"downstream":"NONE"`) + "\n", `x.jsonl:1: header: "downstream" is "NONE"`},
		"downstream empty":       {addToHeader(lines[0], `"downstream":""`) + "\n", `x.jsonl:1: header: "downstream" is empty`},
		"broker unknown":         {addToHeader(lines[0], `"broker":"kafka"`) + "\n", `x.jsonl:1: header: "broker" is "kafka", want "queue" or "log"`},
		"broker empty":           {addToHeader(lines[0], `"broker":""`) + "\n", `x.jsonl:1: header: "broker" is empty`},
		"bad plan in header":     {strings.Replace(lines[0], `"kind":"redelivery"`, `"kind":"meteor"`, 1) + "\n", `unknown kind "meteor"`},
		"ack before any delivery": {lines[0] + "\n" + lines[1] + "\n" + `{"step":2,"kind":"ack","attempt":1}` + "\n",
			`x.jsonl:3: ack event: attempt 1 was never delivered`},
		"commit of an attempt never begun": {lines[0] + "\n" + lines[1] + "\n" + `{"step":2,"kind":"commit","attempt":7,"tx":1}` + "\n",
			`x.jsonl:3: commit event: attempt 7 was never delivered`},
		"delivery of a message never sent": {lines[0] + "\n" + strings.Replace(lines[2], `"step":2`, `"step":1`, 1) + "\n",
			`x.jsonl:2: deliver event: message "m1" was never sent`},
		"an attempt that ends twice": {lines[0] + "\n" + lines[1] + "\n" + lines[2] + "\n" + `{"step":3,"kind":"done","attempt":1}` + "\n" + `{"step":4,"kind":"crash","attempt":1}` + "\n",
			`x.jsonl:5: crash event: attempt 1 has already ended`},
	}
	return cases
}

// addToHeader adds a field to a header line (which has none of that name).
func addToHeader(line, field string) string {
	return strings.Replace(line, `{"format"`, "{"+field+`,"format"`, 1)
}

func TestDecodeErrorsNameTheLine(t *testing.T) {
	for name, c := range brokenHistories(t) {
		t.Run(name, func(t *testing.T) {
			_, err := Decode(strings.NewReader(c.text), "x.jsonl")
			require.ErrorContains(t, err, c.want)
			var se *SyntaxError
			require.ErrorAs(t, err, &se)
		})
	}
}

// TestFileRefusesWhatDecodeRefuses: a history file read as a stream gives,
// at the first of Open, a pass over its events, or Validate that fails,
// the very error Decode gives.
func TestFileRefusesWhatDecodeRefuses(t *testing.T) {
	dir := t.TempDir()
	for name, c := range brokenHistories(t) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, "x.jsonl")
			require.NoError(t, os.WriteFile(path, []byte(c.text), 0o644))
			_, want := Decode(strings.NewReader(c.text), path)
			require.Error(t, want)
			f, err := Open(path)
			if err == nil {
				err = f.Each(func(*Event) error { return nil })
			}
			if err == nil {
				err = f.Validate()
			}
			require.Equal(t, want, err)
		})
	}
}

// TestValidateEachIsValidate: a stream of one's own, validated with
// ValidateEach, is refused as History.Validate refuses its events.
func TestValidateEachIsValidate(t *testing.T) {
	h := sample()
	require.NoError(t, ValidateEach(h.Each))
	h.Events = append(h.Events, Event{Step: 4, Kind: Ack, Attempt: 7})
	want := h.Validate()
	require.EqualError(t, want, "step 4: ack event: attempt 7 was never delivered")
	require.Equal(t, want, ValidateEach(h.Each))
}

// TestFileReadsWhatDecodeReads: on every history of the corpus, a pass
// over the file gives Decode's events, and what a reader keeps of each (a
// copy: the message, state and texts it points to) is not overwritten by
// the next; Len counts them.
func TestFileReadsWhatDecodeReads(t *testing.T) {
	files, err := filepath.Glob("testdata/corpus/*.jsonl")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		h, err := Load(file)
		require.NoError(t, err)
		f, err := Open(file)
		require.NoError(t, err)
		require.Equal(t, h.Header, f.Header)
		require.Zero(t, f.Len())
		var events []Event
		require.NoError(t, f.Each(func(ev *Event) error {
			events = append(events, *ev) // a copy keeps the message, state and texts
			return nil
		}))
		require.Equal(t, h.Events, events, file)
		require.Equal(t, len(h.Events), f.Len())
		require.NoError(t, f.Validate())

		stop := errors.New("stop")
		calls := 0
		require.ErrorIs(t, f.Each(func(*Event) error { calls++; return stop }), stop)
		require.Equal(t, 1, calls, "Each stops at its function's first error")
	}
	_, err = Open(filepath.Join(t.TempDir(), "missing.jsonl"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestDecodeRefusesEnormousLines(t *testing.T) {
	var good bytes.Buffer
	require.NoError(t, sample().Encode(&good))
	header, _, _ := strings.Cut(good.String(), "\n")
	huge := header + "\n" + `{"step":1,"kind":"send","detail":"` + strings.Repeat("x", MaxLineBytes) + `"}` + "\n"
	_, err := Decode(strings.NewReader(huge), "big.jsonl")
	require.ErrorContains(t, err, "big.jsonl:2: line longer than")
}

func TestSaveIsAtomicAndLoadable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "results")
	path, err := Save(sample(), dir, "naive.jsonl")
	require.NoError(t, err)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file is left behind")
	back, err := Load(path)
	require.NoError(t, err)
	require.Equal(t, sample().Hash(), back.Hash())
	// Saving again replaces the file whole.
	_, err = Save(sample(), dir, "naive.jsonl")
	require.NoError(t, err)
}

func TestTimelineMarksFaults(t *testing.T) {
	h := sample()
	h.Events = append(h.Events, Event{Step: 4, Kind: Crash, Process: "consumer-1", Attempt: 1, Point: "after-commit"})
	tl := strings.Join(h.Timeline(), "\n")
	require.Contains(t, tl, "   1  sender")
	require.Contains(t, tl, "!! CRASH at after-commit")
	require.Contains(t, tl, "#1")
}

// TestAttemptNumbersFarApart: attempt numbers beyond the dense range, then
// the range growing past them, are still found.
func TestAttemptNumbersFarApart(t *testing.T) {
	var x attemptIndex[bool]
	x.add(5000)
	for n := 1; n <= 6000; n++ {
		if n != 5000 {
			x.add(n)
		}
	}
	for _, n := range []int{1, 4999, 5000, 5001, 6000} {
		require.NotNil(t, x.get(n), n)
	}
	require.Nil(t, x.get(6001))
	require.Nil(t, x.get(0))
}
