// Package faults describes the faults that oncecheck injects, as plain data.
//
// A Plan is a list of faults, each pinned to a place in the run (the n-th
// delivery, the n-th dispatcher pass, a named point of the handler). Plans are
// generated with rapid (or built from a run's opportunities, in exhaustive
// mode), stored as values in histories, and shrunk when they expose a
// violation (by rapid, then by removing faults one at a time).
package faults

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"pgregory.net/rapid"
)

// Kind is a kind of fault.
type Kind string

// The fault kinds.
const (
	// Crash kills a process (consumer or dispatcher) at a named point: its
	// memory is lost and its uncommitted transaction is aborted.
	Crash Kind = "crash"
	// Redelivery makes the broker deliver a copy again: its ack is lost
	// (variant ack-lost), the broker sends a spontaneous duplicate
	// (duplicate), or the lease expires while the handler works, so the
	// copy is handed out again and the late ack is refused (lease-expired).
	Redelivery Kind = "redelivery"
	// Reorder delivers a later copy before the head of the queue.
	Reorder Kind = "reorder"
	// PublishFailure makes a publish fail: the broker rejects the batch
	// (rejected), accepts part of it and fails (partial), or accepts it but
	// the publisher is told it failed (lost-ack).
	PublishFailure Kind = "publish-failure"
	// Reissue makes the sender send a logical message again with a new
	// message id and the same idempotence key.
	Reissue Kind = "reissue"
	// Concurrent runs two consumers whose steps interleave: each fault of
	// this kind preempts the running process at one boundary.
	Concurrent Kind = "concurrent"
	// Late makes a copy of the at-th delivery arrive again after a delay
	// in the run's time: the broker redelivers it (variant redelivery, the
	// default) or the sender re-issues it with a new id (reissue). Plans
	// place the delay just before and just past the windows the adapter
	// declares (a cache key's time to live, a duplicate window).
	Late Kind = "late"
)

// Variants of Redelivery and PublishFailure.
const (
	AckLost      = "ack-lost"
	Duplicate    = "duplicate"
	LeaseExpired = "lease-expired"
	Rejected     = "rejected"
	Partial      = "partial"
	LostConfirm  = "lost-ack"
	LateCopy     = "redelivery"
	LateReissue  = "reissue"
)

var variants = map[Kind][]string{
	Redelivery:     {AckLost, Duplicate, LeaseExpired},
	PublishFailure: {Rejected, Partial, LostConfirm},
	Late:           {LateCopy, LateReissue},
}

// AllKinds lists the kinds this build can inject, in a stable order.
var AllKinds = []Kind{Crash, Redelivery, Reorder, PublishFailure, Reissue, Concurrent, Late}

// ReorderWindow bounds how far behind the head a reordered copy may be.
const ReorderWindow = 3

// ParseKinds parses a comma-separated list of kinds; "all" means AllKinds.
func ParseKinds(s string) ([]Kind, error) { return ParseKindsOf(s, AllKinds) }

// ParseKindsOf parses a comma-separated list of the known kinds; "all"
// means all of them. The result is in the order of known.
func ParseKindsOf(s string, known []Kind) ([]Kind, error) {
	var out []Kind
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if f == "all" {
			return slices.Clone(known), nil
		}
		k := Kind(f)
		if !slices.Contains(known, k) {
			return nil, fmt.Errorf("unknown fault kind %q (known: %s, all)", f, joinKinds(known))
		}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no fault kind given (known: %s, all)", joinKinds(known))
	}
	sort.Slice(out, func(i, j int) bool { return slices.Index(known, out[i]) < slices.Index(known, out[j]) })
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
	BeforeCache   Point = "before-cache"   // a cache command about to be sent (Index says which)
	AfterCache    Point = "after-cache"    // a cache command done (Index says which)
)

// CachePoints are the crash points around an adapter's cache commands (see
// adapters.Cache). A strategy that uses the cache lists them among its
// own points, so that generated plans crash there.
var CachePoints = []Point{BeforeCache, AfterCache}

// indexed reports whether a crash at point p names which publish, write or
// cache command of the attempt it hits (Fault.Index).
func indexed(p Point) bool {
	return p == BeforePublish || p == AfterPublish || p == AfterWrite || p == BeforeCache || p == AfterCache
}

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
	// Variant refines Redelivery and PublishFailure (see the constants).
	Variant string `json:"variant,omitempty"`
	// Process is the process a crash or publish failure hits.
	Process Process `json:"process,omitempty"`
	// At is the 0-based number of what the fault hits: the delivery (for
	// consumers, redelivery, reorder and reissue), the dispatcher pass (for
	// the dispatcher), or the scheduling boundary (for concurrent).
	At int `json:"at"`
	// Point is where a crash happens.
	Point Point `json:"point,omitempty"`
	// Index selects which publish (0-based) for publish points and publish
	// failures, which write for AfterWrite (Generator always picks the
	// first; exhaustive mode tries each), how far behind the head the
	// reordered copy is (1..ReorderWindow), which workload message is
	// re-issued, at which scheduling point of its attempt (0-based) a
	// lease expires (format 1.3; before, a lease expired as its copy was
	// delivered), or which cache command (0-based) for the cache points.
	Index int `json:"index,omitempty"`
	// Delay is how late a late copy arrives, in the run's time.
	Delay Duration `json:"delay,omitempty"`
}

// String renders a fault in one line, for reports.
func (f Fault) String() string {
	unit := "delivery"
	if f.Process == Dispatcher {
		unit = "dispatcher pass"
	}
	switch f.Kind {
	case Crash:
		s := fmt.Sprintf("crash %s at %s #%d, %s", f.Process, unit, f.At+1, f.Point)
		if indexed(f.Point) {
			s += fmt.Sprintf(" #%d", f.Index+1)
		}
		return s
	case Redelivery:
		switch f.Variant {
		case Duplicate:
			return fmt.Sprintf("broker duplicates the copy of delivery #%d", f.At+1)
		case LeaseExpired:
			return fmt.Sprintf("lease of delivery #%d expires at its step %d: another consumer gets the copy at once; the first one's ack comes late", f.At+1, f.Index+1)
		}
		return fmt.Sprintf("ack of delivery #%d lost: redelivered", f.At+1)
	case Reorder:
		return fmt.Sprintf("delivery #%d takes the copy %d behind the head of the queue", f.At+1, f.Index)
	case PublishFailure:
		what := map[string]string{Rejected: "rejected", Partial: "fails part-way through its batch", LostConfirm: "accepted but reported failed"}[f.Variant]
		return fmt.Sprintf("publish #%d of %s %s #%d %s", f.Index+1, f.Process, unit, f.At+1, what)
	case Reissue:
		return fmt.Sprintf("before delivery #%d the sender re-issues workload message #%d with a new id", f.At+1, f.Index+1)
	case Concurrent:
		return fmt.Sprintf("preempt the running process at scheduling boundary #%d", f.At+1)
	case CutConnection:
		return fmt.Sprintf("cut the database connection of delivery #%d at statement #%d of a transaction", f.At+1, f.Index+1)
	case BrokerRestart:
		return fmt.Sprintf("restart the broker after delivery #%d, its storage kept", f.At+1)
	case Late:
		if f.Variant == LateReissue {
			return fmt.Sprintf("the sender re-issues the message of delivery #%d with a new id, %s later", f.At+1, f.Delay)
		}
		return fmt.Sprintf("the broker delivers the copy of delivery #%d again, %s later", f.At+1, f.Delay)
	default:
		return fmt.Sprintf("%s at #%d", f.Kind, f.At+1)
	}
}

// Plan is the list of faults of one run, and how many consumers it runs.
type Plan struct {
	// Consumers is the number of consumer processes; 0 means 1.
	Consumers int     `json:"consumers,omitempty"`
	Faults    []Fault `json:"faults"`
}

// ConsumerCount returns the number of consumer processes (at least 1).
func (p Plan) ConsumerCount() int { return max(p.Consumers, 1) }

// Crashes reports whether process p crashes at the given point during its
// at-th delivery or pass; index selects the publish or write.
func (p Plan) Crashes(proc Process, at int, point Point, index int) bool {
	for _, f := range p.Faults {
		if f.Kind == Crash && f.Process == proc && f.At == at && f.Point == point {
			if indexed(point) && f.Index != index {
				continue
			}
			return true
		}
	}
	return false
}

// Redelivery returns the variant of redelivery that hits the at-th delivery,
// or "".
func (p Plan) Redelivery(at int) string {
	for _, f := range p.Faults {
		if f.Kind == Redelivery && f.At == at {
			if f.Variant == "" {
				return AckLost
			}
			return f.Variant
		}
	}
	return ""
}

// LeaseSteps bounds the scheduling point of an attempt at which a
// generated lease expires: the points of a handler's check, its
// transaction and its publishes.
const LeaseSteps = 10

// LeaseExpiry returns the scheduling point of the at-th delivery's attempt
// at which its lease expires, if a lease-expired redelivery hits it.
func (p Plan) LeaseExpiry(at int) (step int, ok bool) {
	for _, f := range p.Faults {
		if f.Kind == Redelivery && f.At == at && f.Variant == LeaseExpired {
			return f.Index, true
		}
	}
	return 0, false
}

// LosesAck reports whether the ack of the at-th delivery is lost.
func (p Plan) LosesAck(at int) bool { return p.Redelivery(at) == AckLost }

// PublishFailure returns the variant of publish failure that hits publish
// index of the at-th delivery or pass of proc, or "".
func (p Plan) PublishFailure(proc Process, at, index int) string {
	for _, f := range p.Faults {
		if f.Kind == PublishFailure && f.Process == proc && f.At == at && f.Index == index {
			return f.Variant
		}
	}
	return ""
}

// ReorderAt returns how far behind the head the at-th delivery takes its
// copy (0: the head).
func (p Plan) ReorderAt(at int) int {
	for _, f := range p.Faults {
		if f.Kind == Reorder && f.At == at {
			return f.Index
		}
	}
	return 0
}

// ReissuesBefore returns the workload indexes re-issued just before the
// at-th delivery, in plan order.
func (p Plan) ReissuesBefore(at int) []int {
	var out []int
	for _, f := range p.Faults {
		if f.Kind == Reissue && f.At == at {
			out = append(out, f.Index)
		}
	}
	return out
}

// PreemptsAt reports whether the scheduler switches processes at boundary
// b.
func (p Plan) PreemptsAt(b int) bool {
	for _, f := range p.Faults {
		if f.Kind == Concurrent && f.At == b {
			return true
		}
	}
	return false
}

// Late returns the late faults that hit the at-th delivery, in plan order.
func (p Plan) Late(at int) []Fault {
	var out []Fault
	for _, f := range p.Faults {
		if f.Kind == Late && f.At == at {
			out = append(out, f)
		}
	}
	return out
}

// Horizon returns the deliveries, dispatcher passes and scheduling
// boundaries after which no fault of the plan fires: from then on the run
// drains.
func (p Plan) Horizon() (deliveries, passes, boundaries int) {
	for _, f := range p.Faults {
		switch {
		case f.Kind == Concurrent:
			boundaries = max(boundaries, f.At+1)
		case f.Process == Dispatcher:
			passes = max(passes, f.At+1)
		default:
			deliveries = max(deliveries, f.At+1)
		}
	}
	return deliveries, passes, boundaries
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
	if p.Consumers < 0 || p.Consumers > 16 {
		return fmt.Errorf("consumers %d out of range 0..16", p.Consumers)
	}
	for i, f := range p.Faults {
		if f.At < 0 || f.Index < 0 {
			return fmt.Errorf("fault %d: negative position", i+1)
		}
		if !slices.Contains(AllKinds, f.Kind) && !slices.Contains(ServiceKinds, f.Kind) {
			return fmt.Errorf("fault %d: unknown kind %q", i+1, f.Kind)
		}
		if vs, ok := variants[f.Kind]; ok && f.Variant != "" && !slices.Contains(vs, f.Variant) {
			return fmt.Errorf("fault %d: unknown %s variant %q (known: %s)", i+1, f.Kind, f.Variant, strings.Join(vs, ", "))
		}
		switch f.Kind {
		case Crash, PublishFailure:
			if f.Process != Consumer && f.Process != Dispatcher {
				return fmt.Errorf("fault %d: %s of unknown process %q", i+1, f.Kind, f.Process)
			}
			if f.Kind == Crash && f.Point == "" {
				return fmt.Errorf("fault %d: crash without a point", i+1)
			}
			if f.Kind == PublishFailure && f.Variant == "" {
				return fmt.Errorf("fault %d: publish failure without a variant", i+1)
			}
		case Reorder:
			if f.Index < 1 || f.Index > ReorderWindow {
				return fmt.Errorf("fault %d: reorder distance %d out of range 1..%d", i+1, f.Index, ReorderWindow)
			}
		case Late:
			if f.Delay <= 0 {
				return fmt.Errorf("fault %d: late without a positive delay", i+1)
			}
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
	// Messages is the number of workload messages (for re-issues).
	Messages int
	// Boundaries is the number of scheduling boundaries over which
	// preemptions are placed (default 8 per delivery).
	Boundaries int
	// Dispatcher says whether the adapter runs a dispatcher that can crash.
	Dispatcher bool
	// ExtraPoints are crash points the adapter names itself.
	ExtraPoints []Point
	// MaxPublishes bounds the publish index of publish crash points and
	// publish failures.
	MaxPublishes int
	// Windows are the times to live and windows the adapter declares
	// (adapters.Strategy.Windows): late faults fall just before and just
	// past each one that MaxDelay allows.
	Windows []time.Duration
	// MaxDelay bounds the delay of a late fault (default DefaultMaxDelay).
	MaxDelay time.Duration
	// Swarm makes each plan enable a random non-empty subset of Kinds, each
	// with a random weight, as swarm testing does: a plan then explores
	// combinations that uniform choices make rare (many faults of one kind,
	// or two kinds without the others).
	Swarm bool
}

// Generator returns a rapid generator of plans. Plans shrink toward fewer
// faults placed earlier. A plan runs two consumers when Concurrent is among
// the kinds it draws from (with Swarm, the subset drawn for that plan), or
// when it has a lease that expires.
func Generator(o Options) *rapid.Generator[Plan] {
	deliveries := max(o.Deliveries, 1)
	messages := max(o.Messages, 1)
	boundaries := o.Boundaries
	if boundaries <= 0 {
		boundaries = 8 * deliveries
	}
	maxPub := max(o.MaxPublishes, 1)
	consumerPoints := append(slices.Clone(ConsumerPoints), o.ExtraPoints...)
	delays := LateDelays(o.Windows, o.MaxDelay)
	process := func(t *rapid.T) Process {
		if o.Dispatcher && rapid.IntRange(0, 3).Draw(t, "dispatcher") == 3 {
			return Dispatcher
		}
		return Consumer
	}
	faultOf := func(t *rapid.T, kind Kind) Fault {
		f := Fault{Kind: kind}
		switch kind {
		case Crash:
			f.Process = process(t)
			f.At = rapid.IntRange(0, deliveries-1).Draw(t, "at")
			if f.Process == Dispatcher {
				f.Point = rapid.SampledFrom(DispatcherPoints).Draw(t, "point")
			} else {
				f.Point = rapid.SampledFrom(consumerPoints).Draw(t, "point")
			}
			if f.Point == BeforePublish || f.Point == AfterPublish || f.Point == BeforeCache || f.Point == AfterCache {
				f.Index = rapid.IntRange(0, maxPub-1).Draw(t, "index")
			}
		case Redelivery:
			f.At = rapid.IntRange(0, deliveries-1).Draw(t, "at")
			if v := rapid.SampledFrom(variants[Redelivery]).Draw(t, "variant"); v != AckLost {
				f.Variant = v
			}
			if f.Variant == LeaseExpired {
				f.Index = rapid.IntRange(0, LeaseSteps-1).Draw(t, "step")
			}
		case PublishFailure:
			f.Process = process(t)
			f.At = rapid.IntRange(0, deliveries-1).Draw(t, "at")
			f.Index = rapid.IntRange(0, maxPub-1).Draw(t, "index")
			f.Variant = rapid.SampledFrom(variants[PublishFailure]).Draw(t, "variant")
		case Reorder:
			f.At = rapid.IntRange(0, deliveries-1).Draw(t, "at")
			f.Index = rapid.IntRange(1, ReorderWindow).Draw(t, "distance")
		case Reissue:
			f.At = rapid.IntRange(0, deliveries-1).Draw(t, "at")
			f.Index = rapid.IntRange(0, messages-1).Draw(t, "message")
		case Concurrent:
			f.At = rapid.IntRange(0, boundaries-1).Draw(t, "boundary")
		case Late:
			f.At = rapid.IntRange(0, deliveries-1).Draw(t, "at")
			if rapid.Bool().Draw(t, "reissued") {
				f.Variant = LateReissue
			}
			f.Delay = Duration(rapid.SampledFrom(delays).Draw(t, "delay"))
		}
		return f
	}
	return rapid.Custom(func(t *rapid.T) Plan {
		kinds, weights := o.Kinds, []int(nil)
		if o.Swarm && len(kinds) > 1 {
			kinds, weights = swarm(t, o.Kinds)
		}
		var p Plan
		if slices.Contains(kinds, Concurrent) {
			p.Consumers = 2
		}
		if len(kinds) == 0 || o.MaxFaults <= 0 {
			// rapid requires every generator to draw something.
			_ = rapid.Bool().Draw(t, "no faults")
			return p
		}
		fault := rapid.Custom(func(t *rapid.T) Fault {
			return faultOf(t, pick(t, kinds, weights))
		})
		p.Faults = rapid.SliceOfN(fault, 0, o.MaxFaults).Draw(t, "faults")
		for _, f := range p.Faults {
			if f.Kind == Redelivery && f.Variant == LeaseExpired {
				// An expired lease hands the copy to another consumer
				// while the first still works on it.
				p.Consumers = 2
			}
		}
		return p
	})
}

// swarm draws a non-empty subset of kinds and a weight from 1 to 4 for each.
func swarm(t *rapid.T, all []Kind) ([]Kind, []int) {
	var kinds []Kind
	var weights []int
	for _, k := range all {
		if rapid.Bool().Draw(t, "disable "+string(k)) {
			continue
		}
		kinds = append(kinds, k)
		weights = append(weights, rapid.IntRange(1, 4).Draw(t, "weight of "+string(k)))
	}
	if len(kinds) == 0 {
		return []Kind{all[0]}, []int{1}
	}
	return kinds, weights
}

// pick draws a kind, by weight when weights are given.
func pick(t *rapid.T, kinds []Kind, weights []int) Kind {
	if weights == nil {
		return rapid.SampledFrom(kinds).Draw(t, "kind")
	}
	total := 0
	for _, w := range weights {
		total += w
	}
	n := rapid.IntRange(0, total-1).Draw(t, "kind")
	for i, w := range weights {
		if n < w {
			return kinds[i]
		}
		n -= w
	}
	return kinds[len(kinds)-1]
}
