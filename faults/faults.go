// Package faults describes the faults that oncecheck injects, as plain data.
//
// A Plan is a list of faults, each pinned to a place in the run (the n-th
// delivery, the n-th dispatcher pass, a named point of the handler). Plans are
// generated with rapid, stored as values in histories, and shrunk by rapid
// when they expose a violation.
package faults

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"pgregory.net/rapid"
)

// Kind is a kind of fault.
type Kind string

// The fault kinds.
const (
	// Crash kills a process (consumer or dispatcher) at a named point: its
	// memory is lost and its uncommitted transaction is aborted.
	Crash Kind = "crash"
	// Redelivery loses the ack of a delivery: the broker delivers the same
	// copy (same message id) again later.
	Redelivery Kind = "redelivery"
)

// AllKinds lists the kinds this build can inject, in a stable order.
var AllKinds = []Kind{Crash, Redelivery}

// ParseKinds parses a comma-separated list of kinds; "all" means AllKinds.
func ParseKinds(s string) ([]Kind, error) {
	var out []Kind
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if f == "all" {
			return slices.Clone(AllKinds), nil
		}
		k := Kind(f)
		if !slices.Contains(AllKinds, k) {
			return nil, fmt.Errorf("unknown fault kind %q (known: %s, all)", f, joinKinds(AllKinds))
		}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no fault kind given (known: %s, all)", joinKinds(AllKinds))
	}
	sort.Slice(out, func(i, j int) bool { return slices.Index(AllKinds, out[i]) < slices.Index(AllKinds, out[j]) })
	return out, nil
}

func joinKinds(ks []Kind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

// Point names a place in a process where a crash can happen.
type Point string

// Crash points at the harness's own boundaries. They need no help from the
// adapter: the harness hands out the transaction, publish and ack calls.
const (
	BeforeHandle  Point = "before-handle"  // copy delivered, handler not yet called
	AfterBegin    Point = "after-begin"    // transaction opened
	AfterWrite    Point = "after-write"    // first write of the transaction done
	BeforeCommit  Point = "before-commit"  // commit about to be sent
	AfterCommit   Point = "after-commit"   // commit acknowledged
	BeforePublish Point = "before-publish" // a publish about to be sent (Index says which)
	AfterPublish  Point = "after-publish"  // a publish accepted by the broker (Index says which)
	BeforeAck     Point = "before-ack"     // ack about to be sent
)

// ConsumerPoints are the harness's crash points in a consumer.
var ConsumerPoints = []Point{BeforeHandle, AfterBegin, AfterWrite, BeforeCommit, AfterCommit, BeforePublish, AfterPublish, BeforeAck}

// DispatcherPoints are the harness's crash points in a dispatcher pass.
var DispatcherPoints = []Point{AfterBegin, AfterWrite, BeforeCommit, AfterCommit, BeforePublish, AfterPublish}

// Process names which process a fault hits.
type Process string

// The processes of a run.
const (
	Consumer   Process = "consumer"
	Dispatcher Process = "dispatcher"
)

// Fault is one injected fault.
type Fault struct {
	Kind Kind `json:"kind"`
	// Process is the process a crash hits.
	Process Process `json:"process,omitempty"`
	// At is the 0-based number of the delivery (for the consumer and for
	// redelivery) or of the dispatcher pass that the fault hits.
	At int `json:"at"`
	// Point is where the crash happens.
	Point Point `json:"point,omitempty"`
	// Index selects which publish (0-based) for BeforePublish and
	// AfterPublish, and which write for AfterWrite.
	Index int `json:"index,omitempty"`
}

// String renders a fault in one line, for reports.
func (f Fault) String() string {
	switch f.Kind {
	case Crash:
		unit := "delivery"
		if f.Process == Dispatcher {
			unit = "dispatcher pass"
		}
		s := fmt.Sprintf("crash %s at %s #%d, %s", f.Process, unit, f.At+1, f.Point)
		if f.Point == BeforePublish || f.Point == AfterPublish || f.Point == AfterWrite {
			s += fmt.Sprintf(" #%d", f.Index+1)
		}
		return s
	case Redelivery:
		return fmt.Sprintf("ack of delivery #%d lost: redelivered", f.At+1)
	default:
		return fmt.Sprintf("%s at #%d", f.Kind, f.At+1)
	}
}

// Plan is the list of faults of one run.
type Plan struct {
	Faults []Fault `json:"faults"`
}

// Crashes reports whether process p crashes at the given point during its
// at-th delivery or pass; index selects the publish or write.
func (p Plan) Crashes(proc Process, at int, point Point, index int) bool {
	for _, f := range p.Faults {
		if f.Kind == Crash && f.Process == proc && f.At == at && f.Point == point {
			if (point == BeforePublish || point == AfterPublish || point == AfterWrite) && f.Index != index {
				continue
			}
			return true
		}
	}
	return false
}

// LosesAck reports whether the ack of the at-th delivery is lost.
func (p Plan) LosesAck(at int) bool {
	for _, f := range p.Faults {
		if f.Kind == Redelivery && f.At == at {
			return true
		}
	}
	return false
}

// Horizon returns the number of deliveries and dispatcher passes after
// which no fault of the plan fires: from then on the run drains.
func (p Plan) Horizon() (deliveries, passes int) {
	for _, f := range p.Faults {
		if f.Process == Dispatcher {
			passes = max(passes, f.At+1)
		} else {
			deliveries = max(deliveries, f.At+1)
		}
	}
	return deliveries, passes
}

// Counts returns how many faults of each kind the plan holds.
func (p Plan) Counts() map[Kind]int {
	c := map[Kind]int{}
	for _, f := range p.Faults {
		c[f.Kind]++
	}
	return c
}

// Validate checks that a plan (for example one read from a file) is well
// formed.
func (p Plan) Validate() error {
	for i, f := range p.Faults {
		if f.At < 0 || f.Index < 0 {
			return fmt.Errorf("fault %d: negative position", i+1)
		}
		switch f.Kind {
		case Crash:
			if f.Process != Consumer && f.Process != Dispatcher {
				return fmt.Errorf("fault %d: crash of unknown process %q", i+1, f.Process)
			}
			if f.Point == "" {
				return fmt.Errorf("fault %d: crash without a point", i+1)
			}
		case Redelivery:
		default:
			return fmt.Errorf("fault %d: unknown kind %q", i+1, f.Kind)
		}
	}
	return nil
}

// Options shape the generated plans.
type Options struct {
	// Kinds are the fault kinds to draw from.
	Kinds []Kind
	// MaxFaults bounds the number of faults in a plan.
	MaxFaults int
	// Deliveries is the number of deliveries over which faults are placed.
	Deliveries int
	// Dispatcher says whether the adapter runs a dispatcher that can crash.
	Dispatcher bool
	// ExtraPoints are crash points the adapter names itself.
	ExtraPoints []Point
	// MaxPublishes bounds the publish index of publish crash points.
	MaxPublishes int
}

// Generator returns a rapid generator of plans. Plans shrink toward fewer
// faults placed earlier.
func Generator(o Options) *rapid.Generator[Plan] {
	deliveries := max(o.Deliveries, 1)
	maxPub := max(o.MaxPublishes, 1)
	consumerPoints := append(slices.Clone(ConsumerPoints), o.ExtraPoints...)
	fault := rapid.Custom(func(t *rapid.T) Fault {
		kind := rapid.SampledFrom(o.Kinds).Draw(t, "kind")
		switch kind {
		case Crash:
			if o.Dispatcher && rapid.IntRange(0, 3).Draw(t, "dispatcher") == 3 {
				return Fault{
					Kind: Crash, Process: Dispatcher,
					At:    rapid.IntRange(0, deliveries-1).Draw(t, "at"),
					Point: rapid.SampledFrom(DispatcherPoints).Draw(t, "point"),
					Index: rapid.IntRange(0, maxPub-1).Draw(t, "index"),
				}
			}
			f := Fault{
				Kind: Crash, Process: Consumer,
				At:    rapid.IntRange(0, deliveries-1).Draw(t, "at"),
				Point: rapid.SampledFrom(consumerPoints).Draw(t, "point"),
			}
			if f.Point == BeforePublish || f.Point == AfterPublish {
				f.Index = rapid.IntRange(0, maxPub-1).Draw(t, "index")
			}
			return f
		default:
			return Fault{Kind: kind, At: rapid.IntRange(0, deliveries-1).Draw(t, "at")}
		}
	})
	return rapid.Custom(func(t *rapid.T) Plan {
		if len(o.Kinds) == 0 || o.MaxFaults <= 0 {
			// rapid requires every generator to draw something.
			_ = rapid.Bool().Draw(t, "no faults")
			return Plan{}
		}
		return Plan{Faults: rapid.SliceOfN(fault, 0, o.MaxFaults).Draw(t, "faults")}
	})
}
