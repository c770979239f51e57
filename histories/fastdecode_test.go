package histories

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/oncecheck/oncecheck/model"
)

// sameAsEncodingJSON fails when the fast decoder takes line and decodes it
// otherwise than encoding/json (strict, as Decode reads) does. It reports
// whether the fast decoder took the line.
func sameAsEncodingJSON(t require.TestingT, line []byte) bool {
	var fast, slow Event
	if !(&fastDecoder{}).decode(line, &fast) {
		return false
	}
	err := strictUnmarshal(line, &slow)
	require.NoError(t, err, "the fast decoder took a line encoding/json refuses: %s", line)
	require.Equal(t, slow, fast, "%s", line)
	return true
}

// corpusLines returns the event lines of every history of the corpus.
func corpusLines(t testing.TB) [][]byte {
	files, err := filepath.Glob("testdata/corpus/*.jsonl")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var lines [][]byte
	for _, file := range files {
		f, err := os.Open(file)
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, MaxLineBytes)
		sc.Scan() // the header
		for sc.Scan() {
			lines = append(lines, bytes.Clone(sc.Bytes()))
		}
		require.NoError(t, sc.Err())
		f.Close()
	}
	return lines
}

// TestFastDecoderReadsTheCorpus: the fast decoder takes every line
// oncecheck writes (texts with escapes or beyond ASCII aside), and decodes
// each as encoding/json does.
func TestFastDecoderReadsTheCorpus(t *testing.T) {
	lines := corpusLines(t)
	taken := 0
	for _, line := range lines {
		if sameAsEncodingJSON(t, line) {
			taken++
		}
	}
	t.Logf("the fast decoder took %d of %d lines", taken, len(lines))
	require.Equal(t, len(lines), taken)
}

// TestFastDecoderAgreesOnGeneratedEvents: random events, written as Encode
// writes them, decode alike both ways; plain ones take the fast way.
func TestFastDecoderAgreesOnGeneratedEvents(t *testing.T) {
	texts := rapid.OneOf(
		rapid.SampledFrom([]string{"", "consumer-1", "o1", "AddItem", "a b", "<&>", "é", "tab\there", `quote"d`, `back\slash`, "\x7f", "\u2028"}),
		rapid.StringN(0, 12, -1),
	)
	ints := rapid.OneOf(rapid.IntRange(-3, 3), rapid.Int(), rapid.SampledFrom([]int{1 << 53, -1 << 62, 999_999_999_999_999_999}))
	payloads := rapid.SampledFrom([]string{"", `{}`, `{"sku":"a","qty":1}`, `[1,2,{"x":[]}]`, `"s"`, `1.5e3`, `true`,
		`{"k":"with \"escape\" and ]}"}`, `{"a":{"b":{"c":null}}}`})
	rapid.Check(t, func(t *rapid.T) {
		ev := Event{Step: ints.Draw(t, "step"), Kind: Kind(texts.Draw(t, "kind")), Process: texts.Draw(t, "process"),
			Attempt: ints.Draw(t, "attempt"), Pass: ints.Draw(t, "pass"), Tx: ints.Draw(t, "tx"),
			Point: texts.Draw(t, "point"), Aggregate: texts.Draw(t, "aggregate"), Detail: texts.Draw(t, "detail"),
			Fault: texts.Draw(t, "fault")}
		if rapid.Bool().Draw(t, "has message") {
			ev.Message = &model.Message{ID: texts.Draw(t, "id"), Key: texts.Draw(t, "key"), Aggregate: texts.Draw(t, "magg"),
				Type: texts.Draw(t, "type"), Payload: json.RawMessage(payloads.Draw(t, "payload")),
				Position: int64(ints.Draw(t, "position")), Version: int64(ints.Draw(t, "version")), Causation: texts.Draw(t, "cause")}
		}
		if rapid.IntRange(0, 4).Draw(t, "observe") == 0 {
			ev.State = model.State(payloads.Draw(t, "state"))
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		require.NoError(t, enc.Encode(&ev))
		line := bytes.TrimSpace(buf.Bytes())
		taken := sameAsEncodingJSON(t, line)
		if plain(line) && !bytes.Contains(line, []byte(`\`)) {
			require.True(t, taken, "a plain line went the slow way: %s", line)
		}
	})
}

// plain reports whether a line is printable ASCII.
func plain(line []byte) bool {
	for _, c := range line {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// FuzzFastDecoder: on any input the fast decoder takes, encoding/json
// agrees. Seeds: lines of the corpus and near misses.
func FuzzFastDecoder(f *testing.F) {
	for i, line := range corpusLines(f) {
		if i%16 == 0 {
			f.Add(line)
		}
	}
	for _, s := range []string{
		`{"step":1,"kind":"send"}`, `{"step":01,"kind":"send"}`, `{"step":1,"step":2}`, `{"step":-0}`,
		`{"step":1e3}`, `{"step":1.0}`, `{"step":null}`, `{"message":null}`, `{"message":{}}`,
		`{"message":{"payload":{"a":[1,2]}}}`, `{"message":{"payload":{"a":[1,2}}}`, `{"message":{"payload":"x\"}`,
		`{"message":{"payload":}}`, `{"Step":1}`, `{"kind":"send",}`, `{"kind":"send"}x`, `{"step":99999999999999999999}`,
		`{"message":{"payload":1,"payload":2}}`, `{"detail":"a\u0000b"}`, `{"message":{"payload":"\ud800"}}`, `{"state":null}`, `{"state":{"a":1}}`, `{"state":{"a":1 }}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		sameAsEncodingJSON(t, line)
	})
}

// BenchmarkDecodeEvent decodes every event line of the corpus, by the
// fast decoder (as Reader does) and by encoding/json alone, alternating.
func BenchmarkDecodeEvent(b *testing.B) {
	lines := corpusLines(b)
	var fast, slow time.Duration
	var d fastDecoder
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		for _, line := range lines {
			var ev Event
			if !d.decode(line, &ev) {
				b.Fatalf("the fast decoder gave up on %s", line)
			}
		}
		fast += time.Since(start)
		start = time.Now()
		for _, line := range lines {
			var ev Event
			if err := strictUnmarshal(line, &ev); err != nil {
				b.Fatal(err)
			}
		}
		slow += time.Since(start)
	}
	perLine := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) / float64(len(lines)) }
	b.ReportMetric(perLine(fast), "fast-ns/line")
	b.ReportMetric(perLine(slow), "encoding/json-ns/line")
	b.ReportMetric(float64(slow)/float64(fast), "speed-up")
}
