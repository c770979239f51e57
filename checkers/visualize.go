package checkers

import (
	"fmt"
	"io"

	"github.com/anishathalye/porcupine"

	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// Visualize writes porcupine's visualization of the history's check, an
// HTML page: one row per logical message (its interval from first delivery
// to the end of its last attempt, with its observed outputs), the final
// observation of each aggregate, the linearization porcupine found or its
// longest partial ones, and a "faults" row marking each injected fault.
func Visualize(h *histories.History, m model.Model, o Options, w io.Writer) error {
	if o.Downstream == "" {
		o.Downstream = DownstreamDedupByID
	}
	if o.Timeout == 0 {
		o.Timeout = defaultTimeout
	}
	a, err := analyze(h, o.Downstream)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	ops, err := operations(a, m, nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	_, info := porcupine.CheckOperationsVerbose(porcupineModel(m, o.OutputOrder.checks(m)), ops, o.Timeout)
	var notes []porcupine.Annotation
	for _, ev := range h.Events {
		if ev.Fault == "" {
			continue
		}
		what := histories.Describe(ev)
		notes = append(notes, porcupine.Annotation{
			Tag: "faults", Start: int64(ev.Step), End: int64(ev.Step),
			Description: ev.Fault, Details: fmt.Sprintf("step %d, %s %s: %s", ev.Step, ev.Process, histories.Scope(ev), what),
			BackgroundColor: "#f8d7da",
		})
	}
	info.AddAnnotations(notes)
	return porcupine.Visualize(porcupineModel(m, o.OutputOrder.checks(m)), info, w)
}
