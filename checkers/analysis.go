package checkers

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// logical is what the history tells about one logical message.
type logical struct {
	Key       string
	Msg       model.Message // the first copy sent
	Copies    []string      // message ids of its copies, in send order
	Call      int           // step of the first delivery of any copy (send step if never delivered)
	Return    int           // step at which its last attempt ended
	Delivered bool
	Outputs   []output // distinct by message id
}

// output is one distinct published output (by message id).
type output struct {
	Msg     model.Message
	Step    int // first publication
	Attempt int // attempt that published it, 0 for a dispatcher
	Pass    int // dispatcher pass that published it
	// Ghostly: published by an attempt that wrote state in a transaction
	// and never committed one: the state change it was computed from
	// never happened.
	Ghostly bool
	Copies  int // how many times this id was published
}

// attempt is one delivery and what became of it.
type attempt struct {
	N         int
	Key       string
	Start     int
	End       int // 0 while running
	Committed bool
	Wrote     bool
	// What happened in the attempt, for explanations.
	Steps      []int  // steps of its events
	CommitStep int    // first commit
	CrashStep  int    // crash, if it crashed
	CrashPoint string // where
	Acked      bool
	AckLost    bool
	Published  []int // steps of its publishes
}

// analysis is a history digested for checking.
type analysis struct {
	logicals   map[string]*logical
	order      []string // keys in send order
	aggregates []string // sorted
	observed   map[string]model.State
	attempts   map[int]*attempt
	end        int // last step
	stuck      []string
	stuckSteps []int
	problems   []Finding // order-independent findings (id clashes, unknown causation)
}

// analyze digests a history. It returns an error when the history
// contradicts itself.
func analyze(h *histories.History, policy Downstream) (*analysis, error) {
	a := &analysis{
		logicals: map[string]*logical{},
		observed: map[string]model.State{},
		attempts: map[int]*attempt{},
		end:      len(h.Events),
	}
	if err := h.Validate(); err != nil {
		return nil, err
	}
	byID := map[string]*logical{} // copy id -> logical message
	var outputs []histories.Event
	for i := range h.Events {
		ev, err := canonicalEvent(h.Events[i])
		if err != nil {
			return nil, err
		}
		if at := a.attempts[ev.Attempt]; ev.Attempt != 0 && at != nil {
			at.Steps = append(at.Steps, ev.Step)
			switch ev.Kind {
			case histories.Crash:
				at.CrashStep, at.CrashPoint = ev.Step, ev.Point
			case histories.Ack:
				at.Acked = true
			case histories.AckLost:
				at.AckLost = true
			case histories.Publish:
				at.Published = append(at.Published, ev.Step)
			}
		}
		switch ev.Kind {
		case histories.Send:
			l := a.logicals[ev.Message.Key]
			if l == nil {
				l = &logical{Key: ev.Message.Key, Msg: *ev.Message, Call: ev.Step}
				a.logicals[l.Key] = l
				a.order = append(a.order, l.Key)
			} else if l.Msg.Aggregate != ev.Message.Aggregate || l.Msg.Type != ev.Message.Type || string(l.Msg.Payload) != string(ev.Message.Payload) {
				return nil, fmt.Errorf("step %d (send): copy %q of key %q differs from the first copy in aggregate, type or payload", ev.Step, ev.Message.ID, l.Key)
			}
			l.Copies = append(l.Copies, ev.Message.ID)
			byID[ev.Message.ID] = l
		case histories.Deliver:
			l := byID[ev.Message.ID]
			a.attempts[ev.Attempt] = &attempt{N: ev.Attempt, Key: l.Key, Start: ev.Step, Steps: []int{ev.Step}}
			if !l.Delivered {
				l.Delivered = true
				l.Call = ev.Step
			}
		case histories.Done, histories.Crash:
			if at := a.attempts[ev.Attempt]; at != nil {
				at.End = ev.Step
			}
		case histories.Write:
			if at := a.attempts[ev.Attempt]; at != nil {
				at.Wrote = true
			}
		case histories.Commit:
			if at := a.attempts[ev.Attempt]; at != nil {
				if !at.Committed {
					at.CommitStep = ev.Step
				}
				at.Committed = true
			}
		case histories.Publish:
			outputs = append(outputs, ev)
		case histories.Observe:
			a.observed[ev.Aggregate] = ev.State
		case histories.Stuck:
			a.stuck = append(a.stuck, ev.Detail)
			a.stuckSteps = append(a.stuckSteps, ev.Step)
		}
	}
	for _, at := range a.attempts {
		if at.End == 0 {
			at.End = a.end + 1
		}
		l := a.logicals[at.Key]
		l.Return = max(l.Return, at.End)
	}
	aggs := map[string]bool{}
	for _, l := range a.logicals {
		if !l.Delivered {
			l.Return = a.end + 1
		}
		aggs[l.Msg.Aggregate] = true
	}
	for agg := range aggs {
		a.aggregates = append(a.aggregates, agg)
		if _, ok := a.observed[agg]; !ok && len(a.stuck) == 0 {
			return nil, fmt.Errorf("aggregate %q has messages but no observe event", agg)
		}
	}
	sort.Strings(a.aggregates)
	a.collectOutputs(outputs, policy)
	return a, nil
}

// collectOutputs groups published outputs by message id and attaches them to
// their logical message, recording order-independent problems.
func (a *analysis) collectOutputs(events []histories.Event, policy Downstream) {
	seen := map[string]*output{}
	for _, ev := range events {
		m := *ev.Message
		ghostly := false
		if at := a.attempts[ev.Attempt]; ev.Attempt != 0 && at != nil && at.Wrote && !at.Committed {
			ghostly = true
		}
		if prev := seen[m.ID]; prev != nil {
			prev.Copies++
			if prev.Msg.Output().String() != m.Output().String() || prev.Msg.Causation != m.Causation {
				f := Finding{
					Anomaly: Inconsistent, Keys: keysOf(prev.Msg.Causation, m.Causation),
					Text: fmt.Sprintf("output id %q was published with two contents: %s (step %d) and %s (step %d)",
						m.ID, prev.Msg.Output(), prev.Step, m.Output(), ev.Step),
				}
				if prev.Ghostly && !ghostly {
					// The committed attempt's content is the message's
					// output; the ghost's is reported here.
					a.replaceOutput(m)
				}
				if prev.Ghostly != ghostly {
					f.Anomaly = Ghost
					f.Text += fmt.Sprintf("; the first was published by attempt %d, whose state change never committed", prev.Attempt)
					if ghostly {
						f.Text = strings.Replace(f.Text, "the first", "the second", 1)
						f.Text = strings.Replace(f.Text, fmt.Sprintf("attempt %d,", prev.Attempt), fmt.Sprintf("attempt %d,", ev.Attempt), 1)
					}
				}
				a.problems = append(a.problems, f)
			} else if policy == DownstreamNone && prev.Copies == 2 {
				a.problems = append(a.problems, Finding{
					Anomaly: Duplicate, Keys: keysOf(m.Causation),
					Text: fmt.Sprintf("output %s (id %q) was published more than once (steps %d and %d); --downstream=none allows one copy",
						m.Output(), m.ID, prev.Step, ev.Step),
				})
			}
			continue
		}
		o := &output{Msg: m, Step: ev.Step, Attempt: ev.Attempt, Pass: ev.Pass, Copies: 1, Ghostly: ghostly}
		seen[m.ID] = o
		l := a.logicals[m.Causation]
		if l == nil {
			a.problems = append(a.problems, Finding{
				Anomaly: Ghost,
				Text:    fmt.Sprintf("output %s (id %q, step %d) names cause %q, which is no logical message of the run", m.Output(), m.ID, ev.Step, m.Causation),
			})
			continue
		}
		l.Outputs = append(l.Outputs, *o)
	}
}

func keysOf(keys ...string) []string {
	var out []string
	for _, k := range keys {
		if k != "" && (len(out) == 0 || out[len(out)-1] != k) {
			out = append(out, k)
		}
	}
	return out
}

// contents returns the observed outputs of a logical message as a multiset.
func (l *logical) contents() model.Outputs {
	outs := make(model.Outputs, len(l.Outputs))
	for i, o := range l.Outputs {
		outs[i] = o.Msg.Output()
	}
	return outs.Sorted()
}

// keysOfAggregate returns the keys of an aggregate in send order.
func (a *analysis) keysOfAggregate(agg string) []string {
	var out []string
	for _, k := range a.order {
		if a.logicals[k].Msg.Aggregate == agg {
			out = append(out, k)
		}
	}
	return out
}

// describe names a logical message for people: k1 (AddItem{"sku":"a"} to o1).
func (l *logical) describe() string {
	return fmt.Sprintf("%s (%s to %s)", l.Key, l.Msg.Output(), l.Msg.Aggregate)
}

// attemptsOf counts the deliveries of a logical message's copies.
func (a *analysis) attemptsOf(key string) int {
	n := 0
	for _, at := range a.attempts {
		if at.Key == key {
			n++
		}
	}
	return n
}

// commitsOf counts the attempts at a logical message that committed a
// transaction: how many times its effect is likely to have been applied.
func (a *analysis) commitsOf(key string) int {
	n := 0
	for _, at := range a.attempts {
		if at.Key == key && at.Committed {
			n++
		}
	}
	return n
}

// canonicalEvent returns ev with its message payload and state in canonical
// JSON form.
func canonicalEvent(ev histories.Event) (histories.Event, error) {
	if ev.Message != nil && len(ev.Message.Payload) > 0 {
		m := *ev.Message
		p, err := model.Canonical(m.Payload)
		if err != nil {
			return ev, fmt.Errorf("step %d (%s): payload is not JSON: %v", ev.Step, ev.Kind, err)
		}
		m.Payload = p
		ev.Message = &m
	}
	if len(ev.State) > 0 {
		st, err := model.Canonical(ev.State)
		if err != nil {
			return ev, fmt.Errorf("step %d (%s): state is not JSON: %v", ev.Step, ev.Kind, err)
		}
		ev.State = st
	}
	return ev, nil
}

// attemptsOfKeys returns the attempts at the given logical messages, by
// attempt number.
func (a *analysis) attemptsOfKeys(keys []string) []*attempt {
	var out []*attempt
	for _, at := range a.attempts {
		if slices.Contains(keys, at.Key) {
			out = append(out, at)
		}
	}
	slices.SortFunc(out, func(x, y *attempt) int { return x.N - y.N })
	return out
}

// evidence fills in the attempts and steps behind a finding, and a line
// that tells what each attempt did.
func (a *analysis) evidence(f *Finding) {
	if len(f.Keys) == 0 {
		return
	}
	var parts []string
	for _, at := range a.attemptsOfKeys(f.Keys) {
		f.Attempts = append(f.Attempts, at.N)
		f.Steps = append(f.Steps, at.Steps...)
		var did []string
		if at.CommitStep != 0 {
			did = append(did, fmt.Sprintf("committed at step %d", at.CommitStep))
		} else if at.Wrote {
			did = append(did, "wrote but never committed")
		}
		if len(at.Published) > 0 {
			did = append(did, fmt.Sprintf("published at step %s", joinInts(at.Published)))
		}
		if at.CrashStep != 0 {
			did = append(did, fmt.Sprintf("crashed at step %d (%s)", at.CrashStep, at.CrashPoint))
		}
		if at.AckLost {
			did = append(did, "its ack was lost")
		} else if at.Acked {
			did = append(did, "acked")
		}
		if len(did) == 0 {
			did = append(did, "did nothing visible")
		}
		parts = append(parts, fmt.Sprintf("attempt #%d (%s, from step %d): %s", at.N, at.Key, at.Start, strings.Join(did, ", ")))
	}
	slices.Sort(f.Steps)
	f.Steps = slices.Compact(f.Steps)
	f.Evidence = strings.Join(parts, "; ")
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}

// replaceOutput makes m the observed content of the output with m's id.
func (a *analysis) replaceOutput(m model.Message) {
	l := a.logicals[m.Causation]
	if l == nil {
		return
	}
	for i := range l.Outputs {
		if l.Outputs[i].Msg.ID == m.ID {
			l.Outputs[i].Msg = m
			l.Outputs[i].Ghostly = false
		}
	}
}
