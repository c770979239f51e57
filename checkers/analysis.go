package checkers

import (
	"encoding/json"
	"errors"
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
	Msg       *model.Message // the first copy sent
	Call      int            // step of the first delivery of any copy (send step if never delivered)
	Return    int            // step at which its last attempt ended
	Delivered bool
	Outputs   []*output // distinct by message id
	attempts  int       // deliveries of its copies
	commits   int       // attempts that committed
	committed int       // step of its first commit, 0 if none
	finished  bool      // an attempt at it ended with done
	// Shadowed are contents it published under an id another content
	// had taken first: downstream keeps the first copy of an id, so they
	// never reach it, although they were published.
	Shadowed []shadow
	// Room for the usual single output, so that it takes no allocation
	// of its own.
	output0 [1]*output
}

// shadow is a publication hidden behind an earlier one under its id.
type shadow struct {
	ID          string
	Content     model.Output
	Step, First int // its publication, and the one that took the id
}

// output is one distinct published output (by message id).
type output struct {
	ID, Causation string
	Content       model.Output // type and canonical payload
	Step          int          // first publication
	Attempt       int          // attempt that published it, 0 for a dispatcher
	Pass          int          // dispatcher pass that published it
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
	l         *logical
	Start     int
	End       int // 0 while running
	Committed bool
	Wrote     bool
	ended     bool // a done or crash event ended it
}

// analysis is a history digested for checking.
type analysis struct {
	logicals    map[string]*logical
	list        []*logical // the logical messages in send order
	aggregates  []string   // sorted
	observed    map[string]model.State
	attempts    attemptTable
	end         int // last step
	stuck       []string
	stuckSteps  []int
	canon       canonicalizer
	byAggregate map[string][]string   // keys of each aggregate, in send order
	perAgg      map[string][]*logical // logical messages of each aggregate, in send order
	src         histories.Stream
	problems    []Finding      // order-independent findings (id clashes, unknown causation)
	txs         []*transaction // committed transactions that wrote, read on demand (overwrites)
}

// analyze digests a history. It returns an error when the history
// contradicts itself.
func analyze(src histories.Stream, policy Downstream) (*analysis, error) {
	events := 1024 // a guess, for the sizes of tables
	if h, ok := src.(*histories.History); ok {
		events = len(h.Events)
	}
	guess := events/4 + 1 // logical messages, roughly
	a := &analysis{
		src:      src,
		canon:    canonicalizer{},
		logicals: make(map[string]*logical, guess),
		list:     make([]*logical, 0, guess),
		observed: map[string]model.State{},
		attempts: newAttemptTable(events),
	}
	// The digest checks, as it goes, everything History.Validate checks
	// (a property test holds them to it); when it finds anything wrong,
	// Validate's error, with its line, comes first.
	if err := a.digest(policy, guess); err != nil {
		var se *histories.SyntaxError
		var unread *readError
		if errors.As(err, &se) || errors.As(err, &unread) {
			return nil, err // a line that is no event, or no line at all
		}
		if verr := src.Validate(); verr != nil {
			return nil, verr
		}
		return nil, err
	}
	return a, nil
}

// readError is a stream that could not be read (as opposed to one that
// was read and is wrong).
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// needsAttempt checks an event of a transaction or of a delivery's end:
// an attempt's must name a delivered attempt; a dispatcher's (attempt 0)
// cannot ack or nack.
func (a *analysis) needsAttempt(ev *histories.Event) error {
	if ev.Attempt == 0 {
		if ev.Kind == histories.Ack || ev.Kind == histories.Nack || ev.Kind == histories.AckLost {
			return invalid(ev, "an ack or nack needs its attempt")
		}
		return nil
	}
	if ev.Attempt < 0 || a.attempts.get(ev.Attempt) == nil {
		return invalid(ev, "attempt never delivered")
	}
	return nil
}

// errInvalid marks what History.Validate also refuses.
var errInvalid = errors.New("invalid history")

func invalid(ev *histories.Event, what string) error {
	return fmt.Errorf("%w: step %d (%s): %s", errInvalid, ev.Step, ev.Kind, what)
}

// digest is the analysis proper. It reads the events once.
func (a *analysis) digest(policy Downstream, guess int) error {
	byID := make(map[string]*logical, guess) // copy id -> logical message
	outputs := newOutputCollector(guess)
	// Messages and attempts are allocated in slabs of up to 256.
	slab := min(256, guess)
	var logicalSlab []logical
	var attemptSlab []attempt
	digestOne := func(ev *histories.Event) error {
		a.end = ev.Step
		switch ev.Kind {
		case histories.Send:
			if m := ev.Message; m == nil || m.ID == "" || m.Key == "" || m.Aggregate == "" || m.Type == "" {
				return invalid(ev, "a sent message needs an id, a key, an aggregate and a type")
			}
			if byID[ev.Message.ID] != nil {
				return invalid(ev, "message id sent twice")
			}
			l := a.logicals[ev.Message.Key]
			if l == nil {
				if len(logicalSlab) == 0 {
					logicalSlab = make([]logical, slab)
				}
				l, logicalSlab = &logicalSlab[0], logicalSlab[1:]
				*l = logical{Key: ev.Message.Key, Msg: ev.Message, Call: ev.Step}
				l.Outputs = l.output0[:0]
				a.logicals[l.Key] = l
				a.list = append(a.list, l)
			} else if l.Msg.Aggregate != ev.Message.Aggregate || l.Msg.Type != ev.Message.Type || string(l.Msg.Payload) != string(ev.Message.Payload) {
				return fmt.Errorf("step %d (send): copy %q of key %q differs from the first copy in aggregate, type or payload", ev.Step, ev.Message.ID, l.Key)
			}
			byID[ev.Message.ID] = l
		case histories.Deliver:
			if ev.Message == nil {
				return invalid(ev, "no message")
			}
			l := byID[ev.Message.ID]
			switch {
			case l == nil:
				return invalid(ev, "message never sent")
			case ev.Message.Key != "" && ev.Message.Key != l.Key:
				return invalid(ev, "delivered with another key")
			case ev.Attempt <= 0 || a.attempts.get(ev.Attempt) != nil:
				return invalid(ev, "attempt number missing or used twice")
			}
			if len(attemptSlab) == 0 {
				attemptSlab = make([]attempt, slab)
			}
			at := &attemptSlab[0]
			attemptSlab = attemptSlab[1:]
			*at = attempt{N: ev.Attempt, Key: l.Key, l: l, Start: ev.Step}
			a.attempts.set(ev.Attempt, at)
			l.attempts++
			if !l.Delivered {
				l.Delivered = true
				l.Call = ev.Step
			}
		case histories.Done, histories.Crash:
			if ev.Attempt == 0 {
				return nil // a dispatcher's, or a crash between attempts
			}
			at := a.attempts.get(ev.Attempt)
			if at == nil || at.ended {
				return invalid(ev, "attempt never delivered, or already ended")
			}
			at.End, at.ended = ev.Step, true
			if ev.Kind == histories.Done {
				at.l.finished = true
			}
		case histories.Begin, histories.Abort, histories.Ack, histories.Nack, histories.AckLost:
			if err := a.needsAttempt(ev); err != nil {
				return err
			}
		case histories.Write:
			if err := a.needsAttempt(ev); err != nil {
				return err
			}
			if at := a.attempts.get(ev.Attempt); at != nil {
				at.Wrote = true
			}
		case histories.Commit:
			if err := a.needsAttempt(ev); err != nil {
				return err
			}
			if at := a.attempts.get(ev.Attempt); at != nil && !at.Committed {
				at.Committed = true
				l := at.l
				l.commits++
				if l.committed == 0 {
					l.committed = ev.Step
				}
			}
		case histories.Publish:
			if ev.Message == nil || ev.Message.ID == "" || ev.Message.Type == "" {
				return invalid(ev, "a published output needs a message id and a type")
			}
			if ev.Attempt != 0 && a.attempts.get(ev.Attempt) == nil {
				return invalid(ev, "attempt never delivered")
			}
			outputs.add(a, ev)
		case histories.Observe:
			if ev.Aggregate == "" || len(ev.State) == 0 {
				return invalid(ev, "an observation needs an aggregate and a state")
			}
			st, err := a.canon.state(ev.State)
			if err != nil {
				return fmt.Errorf("step %d (observe): state is not JSON: %v", ev.Step, err)
			}
			a.observed[ev.Aggregate] = st
		case histories.Undrained:
			a.stuck = append(a.stuck, ev.Detail)
			a.stuckSteps = append(a.stuckSteps, ev.Step)
		}
		return nil
	}
	var wrong error // what the digest found wrong, as opposed to a reading error
	err := a.src.Each(func(ev *histories.Event) error {
		wrong = digestOne(ev)
		return wrong
	})
	var se *histories.SyntaxError
	switch {
	case err == nil:
	case err == wrong || errors.As(err, &se):
		return err
	default:
		return &readError{fmt.Errorf("read the history: %w", err)}
	}
	a.attempts.each(func(at *attempt) {
		if at.End == 0 {
			at.End = a.end + 1
		}
		at.l.Return = max(at.l.Return, at.End)
	})
	a.perAgg = map[string][]*logical{}
	for _, l := range a.list {
		if !l.Delivered {
			l.Return = a.end + 1
		}
		agg := l.Msg.Aggregate
		if _, seen := a.perAgg[agg]; !seen {
			a.aggregates = append(a.aggregates, agg)
			if _, ok := a.observed[agg]; !ok && len(a.stuck) == 0 {
				return fmt.Errorf("aggregate %q has messages but no observe event", agg)
			}
		}
		a.perAgg[agg] = append(a.perAgg[agg], l)
	}
	sort.Strings(a.aggregates)
	return outputs.finish(a, policy)
}

// outputCollector groups published outputs by message id, as the events
// come, and attaches each to its logical message. The usual publication,
// the first copy of an output whose cause was sent before it, is settled
// at once and its event let go; the others (further copies of an id, an
// unknown cause), whose findings depend on how attempts ended, are settled
// after the last event, in the order they were published.
type outputCollector struct {
	seen       map[string]*output
	later      []publication
	laterIDs   map[string]bool
	slab       []output // outputs are allocated in slabs of up to 256
	badPayload error    // the first payload that is not JSON
}

// publication is a publish event, as much of it as the analysis needs
// once the event is gone.
type publication struct {
	ID, Causation       string
	Content             model.Output // type and canonical payload
	Step, Attempt, Pass int
}

func newOutputCollector(guess int) *outputCollector {
	return &outputCollector{seen: make(map[string]*output, guess)}
}

// add takes a publish event.
func (c *outputCollector) add(a *analysis, ev *histories.Event) {
	m := ev.Message
	payload, err := a.canon.payload(m.Payload)
	if err != nil {
		if c.badPayload == nil {
			c.badPayload = fmt.Errorf("step %d (publish): payload is not JSON: %v", ev.Step, err)
		}
		return
	}
	p := publication{ID: m.ID, Causation: m.Causation, Content: model.Output{Type: m.Type, Payload: payload},
		Step: ev.Step, Attempt: ev.Attempt, Pass: ev.Pass}
	l := a.logicals[m.Causation]
	if l == nil || c.seen[m.ID] != nil || c.laterIDs[m.ID] {
		c.later = append(c.later, p)
		if c.laterIDs == nil {
			c.laterIDs = map[string]bool{}
		}
		c.laterIDs[m.ID] = true
		return
	}
	if len(c.slab) == 0 {
		c.slab = make([]output, min(256, cap(a.list)))
	}
	o := &c.slab[0]
	c.slab = c.slab[1:]
	*o = output{ID: p.ID, Causation: p.Causation, Content: p.Content, Step: p.Step, Attempt: p.Attempt, Pass: p.Pass, Copies: 1}
	l.Outputs = append(l.Outputs, o)
	c.seen[m.ID] = o
}

// finish settles, once every attempt has ended, whether each output is a
// ghost's, then the publications left for later, recording the problems
// they show.
func (c *outputCollector) finish(a *analysis, policy Downstream) error {
	if c.badPayload != nil {
		return c.badPayload
	}
	for _, l := range a.list {
		for _, o := range l.Outputs {
			o.Ghostly = a.ghostly(o.Attempt)
		}
	}
	var reordered []*logical
	for i := range c.later {
		if l := c.settle(a, &c.later[i], policy); l != nil {
			reordered = append(reordered, l)
		}
	}
	for _, l := range reordered { // outputs settled late go where their step puts them
		slices.SortStableFunc(l.Outputs, func(x, y *output) int { return x.Step - y.Step })
	}
	return nil
}

// ghostly reports whether attempt n wrote state in a transaction and never
// committed one: what it published was computed from a state change that
// never happened.
func (a *analysis) ghostly(n int) bool {
	at := a.attempts.get(n)
	return n != 0 && at != nil && at.Wrote && !at.Committed
}

// settle takes a publication left for later; it returns the logical
// message it gave a new output to, if any.
func (c *outputCollector) settle(a *analysis, p *publication, policy Downstream) *logical {
	content, ghostly := p.Content, a.ghostly(p.Attempt)
	if prev := c.seen[p.ID]; prev != nil {
		prev.Copies++
		if prev.Content.String() != content.String() || prev.Causation != p.Causation {
			f := Finding{
				Anomaly: histories.Inconsistent, Keys: keysOf(prev.Causation, p.Causation),
				Text: fmt.Sprintf("output id %q was published with two contents: %s (step %d) and %s (step %d)",
					p.ID, prev.Content, prev.Step, content, p.Step),
			}
			prevGhostly := prev.Ghostly
			if prevGhostly && !ghostly {
				// The committed attempt's content is the message's
				// output; the ghost's is reported here.
				a.replaceOutput(p.Causation, p.ID, content, prev)
			} else if l := a.logicals[p.Causation]; l != nil {
				l.Shadowed = append(l.Shadowed, shadow{ID: p.ID, Content: content, Step: p.Step, First: prev.Step})
			}
			if prevGhostly != ghostly {
				f.Anomaly = histories.Ghost
				f.Text += fmt.Sprintf("; the first was published by attempt %d, whose state change never committed", prev.Attempt)
				if ghostly {
					f.Text = strings.Replace(f.Text, "the first", "the second", 1)
					f.Text = strings.Replace(f.Text, fmt.Sprintf("attempt %d,", prev.Attempt), fmt.Sprintf("attempt %d,", p.Attempt), 1)
				}
			}
			a.problems = append(a.problems, f)
		} else if policy == DownstreamNone && prev.Copies == 2 {
			a.problems = append(a.problems, Finding{
				Anomaly: histories.Duplicate, Keys: keysOf(p.Causation),
				Text: fmt.Sprintf("output %s (id %q) was published more than once (steps %d and %d); the downstream policy none allows one copy",
					content, p.ID, prev.Step, p.Step),
			})
		}
		return nil
	}
	o := &output{ID: p.ID, Causation: p.Causation, Content: content, Step: p.Step, Attempt: p.Attempt, Copies: 1, Ghostly: ghostly}
	c.seen[p.ID] = o
	l := a.logicals[p.Causation]
	if l == nil {
		a.problems = append(a.problems, Finding{
			Anomaly: histories.Ghost,
			Text:    fmt.Sprintf("output %s (id %q, step %d) names cause %q, which is no logical message of the run", content, p.ID, p.Step, p.Causation),
		})
		return nil
	}
	o.Pass = p.Pass
	l.Outputs = append(l.Outputs, o)
	return l
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
		outs[i] = o.Content
	}
	return outs.Sorted()
}

// published reports whether the message's observed outputs are outs, as
// a multiset (without allocating for the usual zero or one output).
func (l *logical) published(outs model.Outputs) bool {
	switch {
	case len(outs) != len(l.Outputs):
		return false
	case len(outs) == 0:
		return true
	case len(outs) == 1:
		c := l.Outputs[0].Content
		return outs[0].Type == c.Type && model.SameJSON(outs[0].Payload, c.Payload)
	}
	return outs.Equal(l.contents())
}

// checkPositions holds the messages of an ordered model to their contract:
// in each aggregate, positions strictly increase in send order, from any
// start and with any gaps (Kafka offsets from 0, a store's global
// positions). Positions that do not, or that are missing (read as 0) on
// more than one message, are an input error, not a violation.
func (a *analysis) checkPositions(m model.Model) error {
	for _, agg := range sortedKeys(a.perAgg) {
		ls := a.perAgg[agg]
		for i := 1; i < len(ls); i++ {
			prev, cur := ls[i-1].Msg, ls[i].Msg
			if cur.Position <= prev.Position {
				return fmt.Errorf("model %s applies the messages of each aggregate in the order of their positions, "+
					"but in %s, %s (key %s) has position %d, sent after %s (key %s) with position %d: "+
					"positions must strictly increase in send order (a message without one has 0)",
					m.Name(), agg, cur.ID, cur.Key, cur.Position, prev.ID, prev.Key, prev.Position)
			}
		}
	}
	return nil
}

// pending names, for a stuck run, the messages no attempt finished: they
// will never apply, or applied without being acknowledged.
func (a *analysis) pending() string {
	var keys []string
	for _, l := range a.list {
		if !l.finished {
			keys = append(keys, l.describe())
		}
	}
	if len(keys) == 0 {
		return ""
	}
	return "; no attempt finished " + strings.Join(keys, ", ") + ", which will never apply"
}

// keysOfAggregate returns the keys of an aggregate in send order.
func (a *analysis) keysOfAggregate(agg string) []string {
	if a.byAggregate == nil {
		a.byAggregate = make(map[string][]string, len(a.perAgg))
		for agg, ls := range a.perAgg {
			keys := make([]string, len(ls))
			for i, l := range ls {
				keys[i] = l.Key
			}
			a.byAggregate[agg] = keys
		}
	}
	return a.byAggregate[agg]
}

// describe names a logical message for people: k1 (AddItem{"sku":"a"} to o1).
func (l *logical) describe() string {
	return fmt.Sprintf("%s (%s to %s)", l.Key, l.Msg.Output(), l.Msg.Aggregate)
}

// attemptsOfKeys returns the attempts at the given logical messages, by
// attempt number.
func (a *analysis) attemptsOfKeys(keys []string) []*attempt {
	var out []*attempt
	a.attempts.each(func(at *attempt) {
		if slices.Contains(keys, at.Key) {
			out = append(out, at)
		}
	})
	slices.SortFunc(out, func(x, y *attempt) int { return x.N - y.N })
	return out
}

// evidence fills in, for each finding, the attempts and steps behind it
// and a line that tells what each attempt did. It reads the events again,
// once for all findings: it runs only for findings, so the check of a
// passing history keeps nothing per event.
func (a *analysis) evidence(findings []Finding) error {
	type story struct {
		steps          []int
		commit, crash  int
		point          string
		published      []int
		acked, ackLost bool
	}
	stories := map[int]*story{}
	involved := make([][]*attempt, len(findings))
	for i, f := range findings {
		if len(f.Keys) == 0 {
			continue
		}
		involved[i] = a.attemptsOfKeys(f.Keys)
		for _, at := range involved[i] {
			stories[at.N] = &story{}
		}
	}
	if len(stories) == 0 {
		return nil
	}
	err := a.src.Each(func(ev *histories.Event) error {
		st := stories[ev.Attempt]
		if ev.Attempt == 0 || st == nil {
			return nil
		}
		st.steps = append(st.steps, ev.Step)
		switch ev.Kind {
		case histories.Commit:
			if st.commit == 0 {
				st.commit = ev.Step
			}
		case histories.Crash:
			st.crash, st.point = ev.Step, ev.Point
		case histories.Publish:
			st.published = append(st.published, ev.Step)
		case histories.Ack:
			st.acked = true
		case histories.AckLost:
			st.ackLost = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the history again for the evidence: %w", err)
	}
	for i := range findings {
		f := &findings[i]
		var parts []string
		for _, at := range involved[i] {
			st := stories[at.N]
			f.Steps = append(f.Steps, st.steps...)
			f.Attempts = append(f.Attempts, at.N)
			var did []string
			if st.commit != 0 {
				did = append(did, fmt.Sprintf("committed at step %d", st.commit))
			} else if at.Wrote {
				did = append(did, "wrote but never committed")
			}
			if len(st.published) > 0 {
				did = append(did, fmt.Sprintf("published at step %s", joinInts(st.published)))
			}
			if st.crash != 0 {
				did = append(did, fmt.Sprintf("crashed at step %d (%s)", st.crash, st.point))
			}
			if st.ackLost {
				did = append(did, "its ack was lost")
			} else if st.acked {
				did = append(did, "acked")
			}
			if len(did) == 0 {
				did = append(did, "did nothing visible")
			}
			parts = append(parts, fmt.Sprintf("attempt #%d (%s, from step %d): %s", at.N, at.Key, at.Start, strings.Join(did, ", ")))
		}
		if len(involved[i]) > 0 {
			slices.Sort(f.Steps)
			f.Evidence = strings.Join(parts, "; ")
		}
	}
	return nil
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}

// replaceOutput makes content the observed content of output id of the
// logical message key; what the ghost published under that id (prev)
// stays an output of the message, published by an attempt that never
// committed, which the explainer accounts for.
func (a *analysis) replaceOutput(key, id string, content model.Output, prev *output) {
	l := a.logicals[key]
	if l == nil {
		return
	}
	for _, o := range l.Outputs {
		if o.ID == id {
			ghost := *o
			ghost.ID += " (uncommitted)"
			o.Content, o.Ghostly = content, false
			l.Outputs = append(l.Outputs, &ghost)
			return
		}
	}
}

// canonicalizer interns the canonical JSON form of payloads and states:
// a history repeats a few distinct payloads many times.
type canonicalizer map[string][]byte

func (c canonicalizer) form(raw []byte) ([]byte, error) {
	if len(raw) == 0 {
		return raw, nil
	}
	if v, ok := c[string(raw)]; ok {
		return v, nil
	}
	v, err := model.Canonical(raw)
	if err != nil {
		return nil, err
	}
	c[string(raw)] = v
	return v, nil
}

func (c canonicalizer) payload(raw json.RawMessage) (json.RawMessage, error) { return c.form(raw) }

func (c canonicalizer) state(raw model.State) (model.State, error) { return c.form(raw) }

// attemptTable finds attempts by number: in a slice when the numbers are
// dense (as oncecheck writes them), in a map otherwise.
type attemptTable struct {
	dense  []*attempt
	sparse map[int]*attempt
}

func newAttemptTable(events int) attemptTable {
	return attemptTable{dense: make([]*attempt, 0, events/4+1), sparse: map[int]*attempt{}}
}

func (t *attemptTable) get(n int) *attempt {
	if n > 0 && n < len(t.dense) && t.dense[n] != nil {
		return t.dense[n]
	}
	return t.sparse[n] // also a number set before the slice reached it
}

func (t *attemptTable) set(n int, at *attempt) {
	if n > 0 && n <= 2*len(t.dense)+1024 {
		for len(t.dense) <= n {
			t.dense = append(t.dense, nil)
		}
		t.dense[n] = at
		return
	}
	t.sparse[n] = at
}

// each calls f for every attempt, in no particular order.
func (t *attemptTable) each(f func(*attempt)) {
	for _, at := range t.dense {
		if at != nil {
			f(at)
		}
	}
	for _, at := range t.sparse {
		f(at)
	}
}

// publishedBetween returns the steps of the first and the last of the
// message's first publications (0, 0 when it published nothing).
func (l *logical) publishedBetween() (first, last int) {
	for _, o := range l.Outputs {
		if first == 0 || o.Step < first {
			first = o.Step
		}
		last = max(last, o.Step)
	}
	return first, last
}

// effect is the step at which a logical message took effect: its first
// commit, else the end of its last attempt.
func (l *logical) effect() int {
	if l.committed != 0 {
		return l.committed
	}
	return l.Return
}
