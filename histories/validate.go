package histories

import "fmt"

// Validate checks that the events do not contradict each other: every
// delivered copy was sent, attempt numbers are unique, an attempt ends once
// and only after it began, commits, acks and nacks belong to a delivered
// attempt, published outputs and observations are complete. Errors are
// *SyntaxError values naming the line (when the history was read from a
// file) or the step.
func (h *History) Validate() error {
	v := validator{sent: make(map[string]string, len(h.Events)/4)}
	for i := range h.Events {
		if msg := v.check(&h.Events[i]); msg != "" {
			return h.errorAt(i, msg)
		}
	}
	return nil
}

// validator checks events one at a time, in order, against those before.
type validator struct {
	sent     map[string]string // copy id -> key
	attempts attemptIndex[validatedAttempt]
}

type validatedAttempt struct{ ended bool }

// check returns what is wrong with ev given the events before it, "" if
// nothing.
func (v *validator) check(ev *Event) string {
	if v.sent == nil {
		v.sent = map[string]string{}
	}
	fail := func(format string, args ...any) string {
		return fmt.Sprintf("%s event: ", ev.Kind) + fmt.Sprintf(format, args...)
	}
	needsAttempt := func() (*validatedAttempt, string) {
		at := v.attempts.get(ev.Attempt)
		if ev.Attempt <= 0 || at == nil {
			return nil, fail("attempt %d was never delivered", ev.Attempt)
		}
		return at, ""
	}
	switch ev.Kind {
	case Send:
		m := ev.Message
		if m == nil || m.ID == "" || m.Key == "" || m.Aggregate == "" || m.Type == "" {
			return fail("a sent message needs an id, a key, an aggregate and a type")
		}
		if _, dup := v.sent[m.ID]; dup {
			return fail("message id %q is sent twice (a redelivery is not a send)", m.ID)
		}
		v.sent[m.ID] = m.Key
	case Deliver:
		if ev.Message == nil {
			return fail("no message")
		}
		key, ok := v.sent[ev.Message.ID]
		if !ok {
			return fail("message %q was never sent", ev.Message.ID)
		}
		if ev.Message.Key != "" && ev.Message.Key != key {
			return fail("message %q was sent with key %q, delivered with key %q", ev.Message.ID, key, ev.Message.Key)
		}
		if ev.Attempt <= 0 || v.attempts.get(ev.Attempt) != nil {
			return fail("attempt number %d is missing or used twice", ev.Attempt)
		}
		v.attempts.add(ev.Attempt)
	case Done, Crash:
		if ev.Attempt == 0 {
			return "" // a dispatcher's, or a crash between attempts
		}
		at, msg := needsAttempt()
		if msg != "" {
			return msg
		}
		if at.ended {
			return fail("attempt %d has already ended", ev.Attempt)
		}
		at.ended = true
	case Commit, Write, Begin, Abort, Ack, Nack, AckLost:
		if ev.Attempt == 0 {
			if ev.Kind == Ack || ev.Kind == Nack || ev.Kind == AckLost {
				return fail("an %s needs the attempt it belongs to", ev.Kind)
			}
			return "" // a dispatcher's transaction
		}
		if _, msg := needsAttempt(); msg != "" {
			return msg
		}
	case Publish:
		if ev.Message == nil || ev.Message.ID == "" || ev.Message.Type == "" {
			return fail("a published output needs a message id and a type")
		}
		if ev.Attempt != 0 {
			if _, msg := needsAttempt(); msg != "" {
				return msg
			}
		}
	case Observe:
		if ev.Aggregate == "" || len(ev.State) == 0 {
			return fail("an observation needs an aggregate and a state")
		}
	}
	return ""
}

// errorAt builds the error for event i.
func (h *History) errorAt(i int, msg string) error {
	if i < len(h.lines) {
		return &SyntaxError{File: h.name, Line: h.lines[i], Msg: msg}
	}
	return &SyntaxError{Msg: fmt.Sprintf("step %d: %s", h.Events[i].Step, msg)}
}

// attemptIndex finds attempts by number: in a slice while the numbers are
// dense (as oncecheck writes them), in a map beyond.
type attemptIndex[T any] struct {
	dense  []T
	set    []bool
	sparse map[int]*T
}

// get returns attempt n, nil if it was never added. The pointer is valid
// until the next add.
func (x *attemptIndex[T]) get(n int) *T {
	if n > 0 && n < len(x.dense) && x.set[n] {
		return &x.dense[n]
	}
	return x.sparse[n] // a number added before the slice reached it
}

// add makes attempt n, zero; n must be new.
func (x *attemptIndex[T]) add(n int) {
	if n > 0 && n <= 2*len(x.dense)+1024 {
		for len(x.dense) <= n {
			var zero T
			x.dense, x.set = append(x.dense, zero), append(x.set, false)
		}
		x.set[n] = true
		return
	}
	if x.sparse == nil {
		x.sparse = map[int]*T{}
	}
	x.sparse[n] = new(T)
}
