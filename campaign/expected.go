package campaign

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/histories"
)

// ExpectedMatrix is the committed expectation of the matrix: model ->
// strategy -> fault column -> "pass", "n/a", "violation" (any anomaly), or
// the anomaly a violation must show ("a|b": one of several).
type ExpectedMatrix map[string]map[string]map[string]string

// LoadExpectedMatrix reads an expected matrix from a JSON file.
func LoadExpectedMatrix(path string) (ExpectedMatrix, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var e ExpectedMatrix
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return e, nil
}

// Compare returns one line per cell of mx that disagrees with the
// expectation (cells without an expectation disagree too).
func (e ExpectedMatrix) Compare(mx *Matrix) []string {
	var out []string
	for _, c := range mx.Cells {
		if d, ok := e.Disagreement(mx.Model, c); !ok {
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

// Disagreement reports whether a cell of a model's matrix agrees with the
// expectation, and when it does not, says how, in one line.
func (e ExpectedMatrix) Disagreement(model string, c Cell) (string, bool) {
	want, ok := e[model][c.Strategy][c.Fault]
	if !ok {
		return fmt.Sprintf("%s/%s/%s: no expectation (got %s)", model, c.Strategy, c.Fault, c.Summary()), false
	}
	if !e.agrees(want, c) {
		detail := ""
		if c.History != "" {
			detail = " (" + c.History + ")"
		}
		return fmt.Sprintf("%s/%s/%s: expected %s, got %s%s", model, c.Strategy, c.Fault, want, c.Summary(), detail), false
	}
	return "", true
}

func (ExpectedMatrix) agrees(want string, c Cell) bool {
	switch want {
	case "n/a":
		return c.NotApplicable != ""
	case "pass":
		return c.NotApplicable == "" && c.Verdict == histories.Pass
	case "violation":
		return c.Verdict == histories.Violation
	}
	if c.Verdict != histories.Violation {
		return false
	}
	for _, a := range strings.Split(want, "|") {
		if slices.Contains(c.Anomalies, histories.Anomaly(a)) {
			return true
		}
	}
	return false
}

// Expect builds an expectation from a matrix: each violation expects its
// primary anomaly.
func Expect(mxs ...*Matrix) ExpectedMatrix {
	e := ExpectedMatrix{}
	for _, mx := range mxs {
		if e[mx.Model] == nil {
			e[mx.Model] = map[string]map[string]string{}
		}
		for _, c := range mx.Cells {
			if e[mx.Model][c.Strategy] == nil {
				e[mx.Model][c.Strategy] = map[string]string{}
			}
			want := c.Summary()
			if c.Verdict == histories.Violation && c.Fault == "all" {
				want = "violation" // which anomaly shows first depends on the plan drawn
			} else if c.Verdict == histories.Violation {
				want = string(checkers.Result{Anomalies: c.Anomalies}.Primary())
			}
			e[mx.Model][c.Strategy][c.Fault] = want
		}
	}
	return e
}
