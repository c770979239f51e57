// Package checkers decides whether a history is exactly-once and explains why
// not.
//
// The property (docs/design.md, section 2): there is a serial order of all logical
// messages such that applying them one by one to the model yields exactly the
// observed final state of every aggregate and exactly the observed outputs of
// every logical message, and that order respects real time (a message whose
// attempts all ended before another was first delivered comes first). The
// search is porcupine's linearizability check, one partition per aggregate,
// with a state hash and a timeout whose expiry gives "inconclusive".
//
// The checkers know nothing of adapters or of how a history was produced.
package checkers

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// Downstream is the policy for several published copies of one output.
type Downstream string

// The downstream policies.
const (
	// DownstreamDedupByID allows identical copies with the same message id:
	// downstream consumers deduplicate by id. The default.
	DownstreamDedupByID Downstream = "dedup-by-id"
	// DownstreamNone allows one copy of each output.
	DownstreamNone Downstream = "none"
)

// ParseDownstream parses a policy name; "" means the default.
func ParseDownstream(s string) (Downstream, error) {
	switch Downstream(s) {
	case "", DownstreamDedupByID:
		return DownstreamDedupByID, nil
	case DownstreamNone:
		return DownstreamNone, nil
	}
	return "", fmt.Errorf("unknown downstream policy %q (known: dedup-by-id, none)", s)
}

// OutputOrder says whether the order in which an aggregate's outputs were
// published is part of the property.
type OutputOrder string

// The output-order policies.
const (
	// OutputOrderAsModel checks the order of outputs where the model's
	// streams are ordered (Model.Ordered), and not elsewhere. The default.
	OutputOrderAsModel OutputOrder = ""
	// OutputOrderChecked requires, in each aggregate, the outputs to be
	// published in the order their messages took effect: all the outputs
	// of a message (by the first publication of each id) before any output
	// of a message applied after it. It catches a relay that publishes an
	// aggregate's events out of order (newest first, or a retried output
	// after a later one).
	OutputOrderChecked OutputOrder = "checked"
	// OutputOrderIgnored leaves the order of outputs out of the property.
	OutputOrderIgnored OutputOrder = "ignored"
)

// ParseOutputOrder parses a policy name; "" means the default.
func ParseOutputOrder(s string) (OutputOrder, error) {
	switch o := OutputOrder(s); o {
	case OutputOrderAsModel, OutputOrderChecked, OutputOrderIgnored:
		return o, nil
	}
	return "", fmt.Errorf("unknown output-order policy %q (known: checked, ignored, or none for the model's default)", s)
}

// checks reports whether the policy checks the outputs' order for m.
func (o OutputOrder) checks(m model.Model) bool {
	return o == OutputOrderChecked || o == OutputOrderAsModel && m.Ordered()
}

// Options configure a check.
type Options struct {
	// Downstream is the output-copy policy; "" means dedup-by-id.
	Downstream Downstream
	// OutputOrder says whether each aggregate's outputs must be published
	// in the order their messages took effect; "" checks it where the
	// model's streams are ordered.
	OutputOrder OutputOrder
	// Timeout bounds the search; 0 means 30 seconds. Expiry gives
	// Inconclusive, never Pass.
	Timeout time.Duration
	// VerdictOnly decides the verdict and stops there: a violation found
	// by the search is not explained (no findings of its own, no closest
	// execution). The verdict is the same as a full check's. A campaign
	// decides each run this way and explains only the run that failed.
	VerdictOnly bool
}

// Finding is one explained anomaly.
type Finding struct {
	Anomaly histories.Anomaly `json:"anomaly"`
	// Keys are the logical messages involved.
	Keys []string `json:"keys,omitempty"`
	// Aggregate is the aggregate involved, if one.
	Aggregate string `json:"aggregate,omitempty"`
	// Text explains the finding in one sentence.
	Text string `json:"text"`
	// Attempts and Steps are the attempts at the messages involved and
	// the steps of their events; Evidence tells what each attempt did.
	Attempts []int  `json:"attempts,omitempty"`
	Steps    []int  `json:"steps,omitempty"`
	Evidence string `json:"evidence,omitempty"`
}

// Result is the outcome of a check.
type Result struct {
	Verdict   histories.Verdict   `json:"verdict"`
	Anomalies []histories.Anomaly `json:"anomalies,omitempty"`
	Findings  []Finding           `json:"findings,omitempty"`
	// Expected lists, for each failing aggregate, the closest exactly-once
	// execution and how the observation departs from it.
	Expected []string `json:"expected,omitempty"`
	// Reason says why a check is inconclusive.
	Reason string `json:"reason,omitempty"`
}

// Signature is a stable summary of the result (verdict and anomaly names,
// no ids): two checks with the same signature reached the same outcome (a
// saved history and its replay, say).
func (r Result) Signature() string {
	s := string(r.Verdict)
	for _, a := range r.Anomalies {
		s += " " + string(a)
	}
	return s
}

func (r *Result) add(f Finding) {
	r.Findings = append(r.Findings, f)
	if !slices.Contains(r.Anomalies, f.Anomaly) {
		r.Anomalies = append(r.Anomalies, f.Anomaly)
	}
}

// defaultTimeout bounds a check when Options.Timeout is zero.
const defaultTimeout = 30 * time.Second

// ErrMalformed wraps errors about histories that contradict themselves or the
// model.
var ErrMalformed = errors.New("malformed history")

// Check decides whether the history is exactly-once with respect to m.
// An error means the history cannot be checked (it contradicts itself or
// carries messages the model rejects); it wraps ErrMalformed.
func Check(h *histories.History, m model.Model, o Options) (Result, error) {
	return CheckStream(h, m, o)
}

// CheckStream is Check on a history read as a stream: a *histories.File
// is checked without being held in memory (the check keeps what it needs
// of each logical message, not the events), reading the file once, and
// once more for the evidence of a violation. An error that is not about
// the history's content (the file cannot be read) does not wrap
// ErrMalformed.
func CheckStream(src histories.Stream, m model.Model, o Options) (res Result, err error) {
	if o.Downstream == "" {
		o.Downstream = DownstreamDedupByID
	}
	if o.Timeout == 0 {
		o.Timeout = defaultTimeout
	}
	if _, err := ParseOutputOrder(string(o.OutputOrder)); err != nil {
		return Result{}, err
	}
	outOrder := o.OutputOrder.checks(m)
	a, err := analyze(src, o.Downstream)
	if err != nil {
		var unread *readError
		if errors.As(err, &unread) {
			return Result{}, unread.err
		}
		return Result{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if a.end == 0 {
		// A run always sends: a history of no events is one cut down to
		// its header, which proves nothing.
		return Result{}, fmt.Errorf("%w: the history has no events", ErrMalformed)
	}
	if m.Ordered() {
		if err := a.checkPositions(m); err != nil {
			return Result{}, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	}
	defer func() {
		if o.VerdictOnly || err != nil {
			return
		}
		if eerr := a.evidence(res.Findings); eerr != nil {
			res, err = Result{}, eerr
		}
	}()
	for _, s := range a.stuck {
		res.add(Finding{Anomaly: histories.Stuck, Text: "the run did not drain: " + s + a.pending(), Steps: a.stuckSteps})
	}
	for _, f := range a.problems {
		res.add(f)
	}
	if len(a.stuck) > 0 {
		// What did drain is compared all the same, where the history
		// observed a state: the messages still pending may or may not
		// have taken effect.
		res.Verdict = histories.Violation
		if !o.VerdictOnly {
			for _, agg := range a.aggregates {
				if _, ok := a.observed[agg]; !ok {
					continue
				}
				if err := explainAggregate(a, m, agg, outOrder, &res); err != nil {
					return Result{}, err
				}
			}
		}
		return res, nil
	}
	for _, agg := range sortedKeys(a.observed) {
		if !slices.Contains(a.aggregates, agg) && !a.observed[agg].Equal(m.Initial(agg)) {
			res.add(Finding{Anomaly: histories.Inconsistent, Aggregate: agg,
				Text: fmt.Sprintf("final state of %s is %s, but no message targets it (initial state %s)", agg, a.observed[agg], m.Initial(agg))})
		}
	}
	// First a witness: in each aggregate, the order in which the messages
	// took effect usually is a serial order that explains everything, and
	// checking one order is a single pass. Only the aggregates it does not
	// explain go to porcupine's search.
	searched := a.unwitnessed(m, outOrder)
	// A message the model rejects makes the history unreadable, not
	// wrong. The witness applied every message of the aggregates it
	// explains; the others' messages are tried once per distinct content,
	// on the initial state.
	tried := map[string]bool{}
	for _, agg := range searched {
		for _, k := range a.keysOfAggregate(agg) {
			l := a.logicals[k]
			content := l.Msg.Type + "\x00" + string(l.Msg.Payload)
			if tried[content] {
				continue
			}
			tried[content] = true
			if _, _, err := m.Apply(m.Initial(l.Msg.Aggregate), *l.Msg); err != nil {
				return Result{}, fmt.Errorf("%w: message %s: %v", ErrMalformed, l.describe(), err)
			}
		}
	}
	if len(searched) == 0 {
		if len(res.Findings) == 0 {
			res.Verdict = histories.Pass
		} else {
			res.Verdict = histories.Violation
		}
		return res, nil
	}
	ops, err := operations(a, m, searched)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	pm := porcupineModel(m, outOrder)
	deadline := time.Now().Add(o.Timeout)
	outcome := porcupine.CheckOperationsTimeout(pm, ops, o.Timeout)
	switch {
	case outcome == porcupine.Unknown:
		res.Verdict = histories.Inconclusive
		res.Reason = fmt.Sprintf("the exactly-once search did not finish within %s", o.Timeout)
		return res, nil
	case outcome == porcupine.Ok && len(res.Findings) == 0:
		res.Verdict = histories.Pass
		return res, nil
	}
	res.Verdict = histories.Violation
	if o.VerdictOnly {
		return res, nil
	}
	if outcome == porcupine.Illegal {
		// Find the failing partitions (porcupine stops at the first).
		for _, agg := range searched {
			left := time.Until(deadline)
			if left <= 0 {
				res.Reason = "the search for the failing aggregates ran out of time"
				break
			}
			switch porcupine.CheckOperationsTimeout(pm, partitionOf(ops, agg), left) {
			case porcupine.Ok:
				continue
			case porcupine.Unknown:
				res.add(Finding{Anomaly: histories.Inconsistent, Aggregate: agg,
					Text: fmt.Sprintf("%s: porcupine found a violation, but re-checking this aggregate alone ran out of time", agg)})
				continue
			}
			if err := explainAggregate(a, m, agg, outOrder, &res); err != nil {
				return Result{}, err
			}
		}
	}
	if len(res.Anomalies) == 0 {
		res.add(Finding{Anomaly: histories.Inconsistent, Text: "no exactly-once execution explains the history"})
	}
	return res, nil
}

// opInput is the input of one porcupine operation: a logical message, or the
// final observation of an aggregate (Msg nil).
type opInput struct {
	Aggregate string
	Key       string
	Msg       *model.Message
	// FirstPub and LastPub are the steps of the message's first and last
	// first publications (0 when it published nothing).
	FirstPub, LastPub int
}

// opOutput is what was observed: a logical message's outputs, or the final
// state.
type opOutput struct {
	Outputs model.Outputs
	State   model.State
}

// operations builds porcupine's operations for the given aggregates (all
// when aggs is nil).
func operations(a *analysis, m model.Model, aggs []string) ([]porcupine.Operation, error) {
	if aggs == nil {
		aggs = a.aggregates
	}
	wanted := make(map[string]bool, len(aggs))
	for _, agg := range aggs {
		wanted[agg] = true
	}
	ops := make([]porcupine.Operation, 0, len(a.list)+len(aggs))
	for i, l := range a.list {
		if !wanted[l.Msg.Aggregate] {
			continue
		}
		msg := l.Msg
		first, last := l.publishedBetween()
		ops = append(ops, porcupine.Operation{
			ClientId: i, Input: &opInput{Aggregate: msg.Aggregate, Key: l.Key, Msg: msg, FirstPub: first, LastPub: last},
			Call: int64(l.Call), Output: &opOutput{Outputs: l.contents()}, Return: int64(l.Return),
		})
	}
	final := int64(a.end + 2)
	for _, agg := range aggs {
		st, ok := a.observed[agg]
		if !ok {
			return nil, fmt.Errorf("no final state observed for aggregate %q", agg)
		}
		ops = append(ops, porcupine.Operation{
			ClientId: len(a.list), Input: &opInput{Aggregate: agg}, Call: final,
			Output: &opOutput{State: st}, Return: final,
		})
	}
	return ops, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func partitionOf(ops []porcupine.Operation, agg string) []porcupine.Operation {
	var out []porcupine.Operation
	for _, op := range ops {
		if op.Input.(*opInput).Aggregate == agg {
			out = append(out, op)
		}
	}
	return out
}

// aggState is the porcupine state of one partition.
type aggState struct {
	state   model.State // nil: the model's initial state
	applied bool        // ordered models: a message has been applied
	pos     int64       // ordered models: position of the last applied message
	pub     int         // output order: the last publication of the applied messages
}

func porcupineModel(m model.Model, outOrder bool) porcupine.Model {
	ordered := m.Ordered()
	current := func(s *aggState, agg string) model.State {
		if s.state == nil {
			return m.Initial(agg)
		}
		return s.state
	}
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			index := map[string]int{}
			var parts [][]porcupine.Operation
			for _, op := range history {
				agg := op.Input.(*opInput).Aggregate
				i, ok := index[agg]
				if !ok {
					i = len(parts)
					index[agg] = i
					parts = append(parts, nil)
				}
				parts[i] = append(parts[i], op)
			}
			return parts
		},
		Init: func() any { return &aggState{} },
		StepContext: func(ctx context.Context, state, input, output any) (bool, any) {
			s, in, out := state.(*aggState), input.(*opInput), output.(*opOutput)
			cur := current(s, in.Aggregate)
			if in.Msg == nil {
				return cur.Equal(out.State), s
			}
			if ordered && s.applied && in.Msg.Position <= s.pos {
				return false, s // a stream's messages apply in send order
			}
			if outOrder && in.FirstPub != 0 && in.FirstPub < s.pub {
				return false, s // its outputs went out before an earlier message's
			}
			next, outs, err := m.Apply(cur, *in.Msg)
			if err != nil || !outs.Equal(out.Outputs) {
				return false, s
			}
			return true, &aggState{state: next, applied: true, pos: in.Msg.Position, pub: max(s.pub, in.LastPub)}
		},
		Equal: func(a, b any) bool {
			x, y := a.(*aggState), b.(*aggState)
			return x.state.Equal(y.state) && (!ordered || x.applied == y.applied && x.pos == y.pos) && x.pub == y.pub
		},
		Hash: func(s any) uint64 {
			st := s.(*aggState)
			h := st.state.Hash() ^ uint64(st.pub)*0xbf58476d1ce4e5b9
			if ordered && st.applied {
				return h ^ (uint64(st.pos)+1)*0x9e3779b97f4a7c15
			}
			return h
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(*opInput), output.(*opOutput)
			if in.Msg == nil {
				return fmt.Sprintf("observe %s = %s", in.Aggregate, out.State)
			}
			return fmt.Sprintf("%s %s -> %s", in.Key, in.Msg.Output(), out.Outputs)
		},
		DescribeState: func(s any) string { return string(s.(*aggState).state) },
	}
}

// witness reports whether the order in which an aggregate's messages took
// effect (the first commit of one of their attempts, else the end of their
// last attempt; send order among equals) is a serial order that respects
// real time (and send order, for an ordered model) and explains the
// aggregate's observed outputs and final state. A true answer proves the
// aggregate exactly-once; a false one proves nothing, and the search
// decides.
func (a *analysis) witness(m model.Model, agg string, outOrder bool) bool {
	order := slices.Clone(a.perAgg[agg])
	slices.SortStableFunc(order, func(x, y *logical) int { return x.effect() - y.effect() })
	latestCall, latestPub := 0, 0
	st := m.Initial(agg)
	for i, l := range order {
		if l.Return < latestCall {
			return false // it ended before a message placed earlier began
		}
		latestCall = max(latestCall, l.Call)
		if m.Ordered() && i > 0 && l.Msg.Position <= order[i-1].Msg.Position {
			return false
		}
		if outOrder {
			first, last := l.publishedBetween()
			if first != 0 && first < latestPub {
				return false
			}
			latestPub = max(latestPub, last)
		}
		next, outs, err := m.Apply(st, *l.Msg)
		if err != nil || !l.published(outs) {
			return false
		}
		st = next
	}
	obs, ok := a.observed[agg]
	return ok && st.Equal(obs)
}

// unwitnessed returns the aggregates the witness does not explain, trying
// the witness of the aggregates on every CPU.
func (a *analysis) unwitnessed(m model.Model, outOrder bool) []string {
	explained := make([]bool, len(a.aggregates))
	workers := min(runtime.GOMAXPROCS(0), len(a.aggregates))
	if len(a.list) < 1000 {
		// A goroutine costs more than a small history's witness.
		for i, agg := range a.aggregates {
			explained[i] = a.witness(m, agg, outOrder)
		}
		workers = 0
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(a.aggregates); i += workers {
				explained[i] = a.witness(m, a.aggregates[i], outOrder)
			}
		}()
	}
	wg.Wait()
	var out []string
	for i, ok := range explained {
		if !ok {
			out = append(out, a.aggregates[i])
		}
	}
	return out
}

// anomalyPriority orders anomalies from most to least specific; the first
// one a failure shows is the one shrinking preserves.
var anomalyPriority = []histories.Anomaly{
	histories.Lost, histories.Duplicate, histories.Ghost, histories.OutOfOrder, histories.RealTime, histories.Inconsistent, histories.Stuck,
}

// Primary returns the most specific anomaly of the result, "" if none: the
// one a shrunk counterexample keeps.
func (r Result) Primary() histories.Anomaly {
	for _, a := range anomalyPriority {
		if slices.Contains(r.Anomalies, a) {
			return a
		}
	}
	return ""
}
