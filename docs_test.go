package oncecheck

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/histories"
)

// docExample returns the lines of the hand-written example of
// docs/history-format.md.
func docExample(t *testing.T) []string {
	doc, err := os.ReadFile("docs/history-format.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(doc), "```jsonl\n")
	require.True(t, ok, "the doc has a jsonl example")
	block, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	return strings.Split(strings.TrimSpace(block), "\n")
}

func checkLines(t *testing.T, lines []string) checkers.Result {
	t.Helper()
	path := filepath.Join(t.TempDir(), "example.jsonl")
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	h, err := histories.Load(path)
	require.NoError(t, err)
	res, err := Check(h, CheckOptions{})
	require.NoError(t, err)
	return res
}

// TestTheDocumentedExampleChecksAsTheDocSays checks the hand-written
// example of the format documentation, and its two edits, exactly as the
// documentation says they come out.
func TestTheDocumentedExampleChecksAsTheDocSays(t *testing.T) {
	lines := docExample(t)
	require.Equal(t, histories.Pass, checkLines(t, lines).Verdict)

	doubled := append([]string(nil), lines...)
	doubled[len(doubled)-1] = strings.Replace(doubled[len(doubled)-1], `"a":2`, `"a":4`, 1)
	res := checkLines(t, doubled)
	require.Equal(t, histories.Violation, res.Verdict)
	require.Equal(t, []histories.Anomaly{histories.Duplicate}, res.Anomalies)

	withoutLine5 := append(append([]string(nil), lines[:4]...), lines[5:]...)
	res = checkLines(t, withoutLine5)
	require.Equal(t, histories.Violation, res.Verdict)
	require.Equal(t, []histories.Anomaly{histories.Lost}, res.Anomalies)
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	c := jsonschema.NewCompiler()
	s, err := c.Compile("docs/history.schema.json")
	require.NoError(t, err)
	return s
}

func validateLine(t *testing.T, s *jsonschema.Schema, line, where string) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(line))
	require.NoError(t, err, where)
	require.NoError(t, s.Validate(v), where)
}

// TestSchemaDescribesWhatWeWrite validates the documented example and every
// history of the corpus, line by line, against docs/history.schema.json,
// and checks that the schema refuses what the reader refuses.
func TestSchemaDescribesWhatWeWrite(t *testing.T) {
	s := compileSchema(t)
	for i, line := range docExample(t) {
		validateLine(t, s, line, "doc example line "+string(rune('1'+i)))
	}
	files := corpus(t)
	for _, file := range files {
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		for i, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
			validateLine(t, s, string(line), file+":"+json.Number(string(rune('0'+i%10))).String())
		}
	}
	for _, bad := range []string{
		`{"step":1,"kind":"teleport"}`,
		`{"step":0,"kind":"send"}`,
		`{"step":1,"kind":"send","colour":"red"}`,
		`{"format":"oncecheck-history","version":"one","model":"orders","workload":[],"plan":{"faults":[]}}`,
	} {
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(bad))
		require.NoError(t, err)
		require.Error(t, s.Validate(v), bad)
	}
}
