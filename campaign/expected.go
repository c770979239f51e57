package campaign

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/sim"
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

// Encode writes the expectation of the matrices mxs as the committed files
// are written: one line per strategy, models, strategies and columns in
// the matrices' order.
func (e ExpectedMatrix) Encode(mxs ...*Matrix) ([]byte, error) {
	var b strings.Builder
	b.WriteString("{\n")
	for i, mx := range mxs {
		name, err := json.Marshal(mx.Model)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "  %s: {\n", name)
		for j, s := range mx.Strategies {
			var cells []string
			for _, col := range mx.Columns {
				want, ok := e[mx.Model][s][col]
				if !ok {
					continue
				}
				k, _ := json.Marshal(col)
				v, _ := json.Marshal(want)
				cells = append(cells, fmt.Sprintf("%s: %s", k, v))
			}
			sname, _ := json.Marshal(s)
			fmt.Fprintf(&b, "    %s: {%s}", sname, strings.Join(cells, ", "))
			if j < len(mx.Strategies)-1 {
				b.WriteString(",")
			}
			b.WriteString("\n")
		}
		b.WriteString("  }")
		if i < len(mxs)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("}\n")
	return []byte(b.String()), nil
}

// ExpectedMatrixFile is the file, in dir, of the expected matrix at an
// isolation level: matrix.json at read committed (the default),
// matrix-<level>.json at the others.
func ExpectedMatrixFile(dir string, level adapters.Isolation) string {
	if level = level.Or(adapters.ReadCommitted); level == adapters.ReadCommitted {
		return filepath.Join(dir, "matrix.json")
	}
	return filepath.Join(dir, "matrix-"+string(level)+".json")
}

// ExpectedBrokerMatrixFile is the file, in dir, of the expected matrix at
// an isolation level on a broker: ExpectedMatrixFile's on the queue
// broker, matrix-log.json (matrix-log-<level>.json at levels other than
// read committed) on the log broker.
func ExpectedBrokerMatrixFile(dir string, level adapters.Isolation, broker string) string {
	if broker == "" || broker == sim.BrokerQueue {
		return ExpectedMatrixFile(dir, level)
	}
	if level = level.Or(adapters.ReadCommitted); level == adapters.ReadCommitted {
		return filepath.Join(dir, "matrix-"+broker+".json")
	}
	return filepath.Join(dir, "matrix-"+broker+"-"+string(level)+".json")
}
