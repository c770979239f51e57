package model

import (
	"bytes"
	"slices"
	"strconv"
	"sync"
)

// Memo remembers what a model's Apply returned for each state and message,
// so that one run's handlers and its check compute each step once: the
// check replays, in the order the messages took effect, the very steps the
// handlers made. A model's Apply is a function of the state and the
// message's content (docs/design.md, section 1, requires it), so a
// remembered result is the result. The message's ID is not part of the key:
// redelivered copies share their result, as the check already assumes (a
// re-issue has a new position, and so a key of its own).
//
// A Memo is safe for concurrent use. It keeps everything it was asked, so
// it belongs to one run (or one check), not to a campaign.
type Memo struct {
	m       Model
	mu      sync.Mutex
	results map[string]memoResult
	buf     []byte // the key being built, under mu
}

type memoResult struct {
	next State
	outs Outputs
	err  error
}

// NewMemo returns an empty memo of m.
func NewMemo(m Model) *Memo {
	return &Memo{m: m, results: map[string]memoResult{}}
}

// apply returns the remembered result (hit), or what the model returned,
// of which the memo keeps a copy (miss). A remembered result is shared:
// callers must not modify it.
func (c *Memo) apply(s State, msg Message) (r memoResult, hit bool) {
	c.mu.Lock()
	b := c.buf[:0]
	for _, part := range []string{msg.Aggregate, msg.Key, msg.Type, msg.Causation} {
		b = strconv.AppendInt(b, int64(len(part)), 10)
		b = append(b, ':')
		b = append(b, part...)
	}
	b = strconv.AppendInt(b, msg.Position, 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, msg.Version, 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, int64(len(msg.Payload)), 10)
	b = append(b, ':')
	b = append(b, msg.Payload...)
	b = append(b, s...)
	c.buf = b
	r, ok := c.results[string(b)]
	key := ""
	if !ok {
		key = string(b)
	}
	c.mu.Unlock()
	if ok {
		return r, true
	}
	// Computed outside the lock: two callers may compute one step twice,
	// and both get the same answer.
	next, outs, err := c.m.Apply(s, msg)
	c.mu.Lock()
	c.results[key] = memoResult{next: State(bytes.Clone(next)), outs: cloneOutputs(outs), err: err}
	c.mu.Unlock()
	return memoResult{next: next, outs: outs, err: err}, false
}

func cloneOutputs(outs Outputs) Outputs {
	if outs == nil {
		return nil
	}
	c := slices.Clone(outs)
	for i := range c {
		c[i].Payload = bytes.Clone(c[i].Payload)
	}
	return c
}

// Len returns the number of remembered steps.
func (c *Memo) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.results)
}

// Shared returns the model with Apply answered from the memo. Its results
// are shared with every other caller: use it only where they are read, never
// modified (a checker).
func (c *Memo) Shared() Model { return c.view(false) }

// Guarded returns the model with Apply answered from the memo, each result
// a private copy, for callers that may modify what they get (handlers). The
// memo keeps its own copy of what the model returned, so nothing a handler
// does to its results reaches another caller.
func (c *Memo) Guarded() Model { return c.view(true) }

func (c *Memo) view(private bool) Model {
	v := memoView{Model: c.m, memo: c, private: private}
	if d, ok := c.m.(AppliedDetector); ok {
		return memoDetectorView{memoView: v, d: d}
	}
	return v
}

// memoView is a model whose Apply goes through a memo. Every other method
// is the wrapped model's.
type memoView struct {
	Model
	memo    *Memo
	private bool
}

// Apply implements Model.Apply through the memo.
func (v memoView) Apply(s State, msg Message) (State, Outputs, error) {
	r, hit := v.memo.apply(s, msg)
	if hit && v.private {
		return State(bytes.Clone(r.next)), cloneOutputs(r.outs), r.err
	}
	return r.next, r.outs, r.err
}

// memoDetectorView keeps the wrapped model's AppliedDetector.
type memoDetectorView struct {
	memoView
	d AppliedDetector
}

// AlreadyApplied implements AppliedDetector.
func (v memoDetectorView) AlreadyApplied(s State, m Message) (bool, error) {
	return v.d.AlreadyApplied(s, m)
}
