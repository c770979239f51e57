package model

import (
	"encoding/json"
	"fmt"

	"pgregory.net/rapid"
)

// Typed builds a Model from functions over a Go type S, the state of one
// aggregate. It is the easiest way to bring your own model: write the
// business logic on plain values, and Typed does the JSON.
//
//	var Counter = model.Typed[int]{
//		Title: "counter",
//		Init:  func(string) int { return 0 },
//		Step: func(n int, m model.Message) (int, model.Outputs, error) {
//			return n + 1, model.Outputs{model.Emit("Counted", map[string]int{"n": n + 1})}, nil
//		},
//		Generate: func(max int) *rapid.Generator[model.Workload] { ... },
//	}
//
// Step receives its own copy of the state and may change it.
type Typed[S any] struct {
	// Title is the model's name.
	Title string
	// Description is a one-line description (optional).
	Description string
	// InOrder says each aggregate's messages must be applied in send order.
	InOrder bool
	// Init returns the state of an untouched aggregate.
	Init func(aggregate string) S
	// Step applies one message.
	Step func(s S, m Message) (S, Outputs, error)
	// Generate returns a workload generator (see Workload.Number).
	Generate func(maxMessages int) *rapid.Generator[Workload]
	// Messages are the few message contents (type and payload; their
	// aggregate is ignored) that make a difference to the logic, for the
	// exhaustive mode: Shapes lists every sequence of up to maxMessages of
	// them over aggregates numbered in order of first use.
	Messages []Message
	// Prefix names the aggregates of enumerated workloads: Prefix1,
	// Prefix2, ... (default "a").
	Prefix string
}

var (
	_ Model      = Typed[int]{}
	_ Enumerator = Typed[int]{}
)

// Shapes implements Enumerator from Messages: every workload of 1 to
// maxMessages of them, each on an aggregate already used or the next new
// one, smallest first. It lists none when Messages is empty.
func (t Typed[S]) Shapes(maxMessages int) []Workload {
	if len(t.Messages) == 0 {
		return nil
	}
	prefix := t.Prefix
	if prefix == "" {
		prefix = "a"
	}
	return shapes(maxMessages, func(_, used int, _ bool) []shapeOption {
		opts := make([]shapeOption, len(t.Messages))
		for i, m := range t.Messages {
			opts[i] = shapeOption{prefix, Message{Type: m.Type, Payload: m.Payload}, used}
		}
		return opts
	})
}

// Name implements Model.
func (t Typed[S]) Name() string { return t.Title }

// Describe implements Model.
func (t Typed[S]) Describe() string { return t.Description }

// Ordered implements Model.
func (t Typed[S]) Ordered() bool { return t.InOrder }

// Initial implements Model.
func (t Typed[S]) Initial(aggregate string) State {
	s, err := encodeCanonical(t.Init(aggregate))
	if err != nil {
		panic(fmt.Sprintf("model %s: initial state cannot be encoded: %v", t.Title, err))
	}
	return s
}

// Apply implements Model.
func (t Typed[S]) Apply(s State, m Message) (State, Outputs, error) {
	var st S
	if err := json.Unmarshal(s, &st); err != nil {
		return nil, nil, fmt.Errorf("%s: bad state %s: %w", t.Title, s, err)
	}
	next, outs, err := t.Step(st, m)
	if err != nil {
		return nil, nil, err
	}
	ns, err := encodeCanonical(next)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: state cannot be encoded: %w", t.Title, err)
	}
	return ns, outs, nil
}

// Workload implements Model.
func (t Typed[S]) Workload(maxMessages int) *rapid.Generator[Workload] {
	return t.Generate(maxMessages)
}

func encodeCanonical(v any) (State, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return Canonical(b)
}

// Payload decodes a message's payload into a T.
func Payload[T any](m Message) (T, error) {
	var v T
	if err := json.Unmarshal(m.Payload, &v); err != nil {
		return v, fmt.Errorf("payload of %s %s: %w", m.Type, m.Payload, err)
	}
	return v, nil
}

// Emit makes an output of the given type with v as its payload, in
// canonical JSON. It panics if v cannot be encoded (a programming error).
func Emit(typ string, v any) Output {
	b, err := encodeCanonical(v)
	if err != nil {
		panic(fmt.Sprintf("model.Emit(%s): %v", typ, err))
	}
	return Output{Type: typ, Payload: []byte(b)}
}

// Send makes a workload message of the given type, aggregate and payload
// (canonical JSON) for generators; Workload.Number gives ids and keys.
func Send(aggregate, typ string, payload any) Message {
	o := Emit(typ, payload)
	return Message{Aggregate: aggregate, Type: typ, Payload: o.Payload}
}
