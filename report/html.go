package report

import (
	"bytes"
	"fmt"
	"html/template"
	"io"

	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// HTML writes one self-contained page (no network, no external files): the
// verdict, the findings with their evidence, the closest exactly-once
// execution, the workload and faults, the timeline in lanes, and
// porcupine's visualization of the partitions in an inline frame.
func HTML(w io.Writer, name string, h *histories.History, res checkers.Result, m model.Model, o checkers.Options) error {
	var viz bytes.Buffer
	if err := checkers.Visualize(h, m, o, &viz); err != nil {
		return fmt.Errorf("visualize: %w", err)
	}
	procs, cells := Lanes(h)
	type row struct {
		Step  int
		Cells []template.HTML
		Fault bool
	}
	rows := make([]row, len(cells))
	for i, c := range cells {
		r := row{Step: c.Step, Cells: make([]template.HTML, len(procs)), Fault: c.Fault}
		text := c.Text
		if c.Scope != "" {
			text = c.Scope + " " + text
		}
		r.Cells[c.Lane] = template.HTML(template.HTMLEscapeString(text))
		rows[i] = r
	}
	faults := make([]string, len(h.Header.Plan.Faults))
	for i, f := range h.Header.Plan.Faults {
		faults[i] = f.String()
	}
	data := map[string]any{
		"Name": name, "Header": h.Header, "Verdict": VerdictLine(res), "Result": res,
		"Pass": res.Verdict == histories.Pass, "Faults": faults, "Procs": procs, "Rows": rows,
		"Viz": viz.String(),
	}
	return page.Execute(w, data)
}

var page = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>oncecheck: {{.Name}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 2em; }
.verdict { font-size: 1.4em; font-weight: bold; padding: .4em .8em; display: inline-block; border-radius: 4px; }
.pass { background: #d4edda; color: #155724; } .fail { background: #f8d7da; color: #721c24; }
code, pre, td { font-family: ui-monospace, monospace; font-size: 12px; }
table.lanes { border-collapse: collapse; } table.lanes td, table.lanes th { border: 1px solid #ddd; padding: 2px 6px; vertical-align: top; }
table.lanes th { background: #f4f4f4; position: sticky; top: 0; }
tr.fault td { background: #fde2e2; font-weight: bold; }
.finding { margin: .5em 0; } .evidence { color: #555; margin-left: 1.5em; }
iframe { width: 100%; height: 600px; border: 1px solid #ccc; }
</style></head>
<body>
<h1>{{.Name}}</h1>
<p>strategy <b>{{.Header.Strategy}}</b>, model <b>{{.Header.Model}}</b>, backend {{.Header.Backend}}, seed {{.Header.Seed}}, oncecheck {{.Header.Tool}}, format {{.Header.Version}}</p>
<p id="verdict" class="verdict {{if .Pass}}pass{{else}}fail{{end}}">{{.Verdict}}</p>
{{if .Result.Findings}}<h2>What went wrong</h2>
{{range .Result.Findings}}<div class="finding"><b>{{.Anomaly}}</b>: {{.Text}}{{if .Evidence}}<div class="evidence">evidence: {{.Evidence}}</div>{{end}}</div>
{{end}}{{end}}
{{if .Result.Expected}}<h2>Closest exactly-once execution</h2><pre>{{range .Result.Expected}}{{.}}
{{end}}</pre>{{end}}
<h2>Workload</h2><pre>{{range .Header.Workload}}{{.Key}}  id={{.ID}}  {{.Output}} to {{.Aggregate}}
{{end}}</pre>
<h2>Faults</h2><pre>{{range .Faults}}{{.}}
{{else}}none
{{end}}</pre>
<h2>Timeline</h2>
<table class="lanes" id="timeline"><tr><th>step</th>{{range .Procs}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr{{if .Fault}} class="fault"{{end}}><td>{{.Step}}</td>{{range .Cells}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>
<h2>Porcupine's view of the partitions</h2>
<p>One row per logical message, from its first delivery to the end of its last attempt; hover for outputs and states.</p>
<iframe title="porcupine visualization" srcdoc="{{.Viz}}"></iframe>
</body></html>
`))
