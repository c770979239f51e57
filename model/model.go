package model

import (
	"fmt"
	"slices"
	"sort"

	"pgregory.net/rapid"
)

// Model is a reference business logic: a pure, deterministic state machine
// per aggregate. A handler is correct when its observable side effects equal
// those of applying every logical message exactly once, in some serial order,
// to the model.
type Model interface {
	// Name is the model's identifier on the command line and in histories.
	Name() string
	// Describe is a one-line human description.
	Describe() string
	// Ordered reports whether each aggregate's messages must be applied in
	// their send order.
	Ordered() bool
	// Initial returns the state of an aggregate that no message has touched.
	Initial(aggregate string) State
	// Apply applies one message to a state and returns the new state and the
	// outputs to publish. It must not modify s. An error means the message is
	// malformed for this model.
	Apply(s State, m Message) (State, Outputs, error)
	// Workload returns a generator of workloads (logical messages in send
	// order) with at most maxMessages messages.
	Workload(maxMessages int) *rapid.Generator[Workload]
}

// AppliedDetector is implemented by models whose state can tell, for some
// messages, that the message has already been applied (state-based
// idempotence). AlreadyApplied must answer false when the state cannot
// tell.
type AppliedDetector interface {
	AlreadyApplied(s State, m Message) (bool, error)
}

// Workload is a list of logical messages in send order. Message i has ID
// "m<i+1>", key "k<i+1>" and position i+1.
type Workload []Message

// Aggregates returns the distinct aggregates of the workload, sorted.
func (w Workload) Aggregates() []string {
	set := map[string]bool{}
	for _, m := range w {
		set[m.Aggregate] = true
	}
	out := make([]string, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// Number assigns IDs, keys, positions and expected versions in send order;
// generators call it.
func (w Workload) Number() Workload {
	out := slices.Clone(w)
	versions := map[string]int64{}
	for i := range out {
		out[i].ID = fmt.Sprintf("m%d", i+1)
		out[i].Key = fmt.Sprintf("k%d", i+1)
		out[i].Position = int64(i + 1)
		out[i].Version = versions[out[i].Aggregate]
		versions[out[i].Aggregate]++
	}
	return out
}
