package model

import (
	"encoding/json"
	"fmt"

	"pgregory.net/rapid"
)

// Orders is the model of the talk "Excuse me, my bill does not match my
// order": order lines with quantities. It is not idempotent, and its outputs
// depend on the state, so replays and wrong states both show.
//
//   - AddItem{sku, qty} adds qty to the line and emits ItemAdded carrying the
//     line's resulting quantity, plus FirstItemAdded when the order gets its
//     first line. On a confirmed order it emits AddItemRejected instead.
//   - RemoveItem{sku} removes the line and emits ItemRemoved; no-op when the
//     line does not exist or the order is confirmed.
//   - Confirm{} confirms an open order with lines and emits OrderConfirmed
//     with the number of items; otherwise it emits OrderRejected.
type Orders struct{}

// OrderState is the state of one order. Fields are in the order of their
// JSON names, so that the encoding is canonical (see Canonical).
type OrderState struct {
	Confirmed bool           `json:"confirmed"`
	Lines     map[string]int `json:"lines"`
}

// Orders message and output types.
const (
	AddItem         = "AddItem"
	RemoveItem      = "RemoveItem"
	Confirm         = "Confirm"
	ItemAdded       = "ItemAdded"
	FirstItemAdded  = "FirstItemAdded"
	ItemRemoved     = "ItemRemoved"
	AddItemRejected = "AddItemRejected"
	OrderConfirmed  = "OrderConfirmed"
	OrderRejected   = "OrderRejected"
)

type itemPayload struct {
	Qty int    `json:"qty,omitempty"`
	SKU string `json:"sku"`
}

// Name implements Model.
func (Orders) Name() string { return "orders" }

// Describe implements Model.
func (Orders) Describe() string {
	return "order lines: AddItem/RemoveItem/Confirm, outputs depend on state (ItemAdded carries the line total, FirstItemAdded)"
}

// Ordered implements Model: orders accept any serial order.
func (Orders) Ordered() bool { return false }

// Initial implements Model.
func (Orders) Initial(string) State { return mustEncode(OrderState{Lines: map[string]int{}}) }

// Apply implements Model.
func (Orders) Apply(s State, m Message) (State, Outputs, error) {
	var st OrderState
	if err := json.Unmarshal(s, &st); err != nil {
		return nil, nil, fmt.Errorf("orders: bad state %s: %w", s, err)
	}
	if st.Lines == nil {
		st.Lines = map[string]int{}
	}
	var p itemPayload
	if len(m.Payload) > 0 {
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			return nil, nil, fmt.Errorf("orders: bad payload of %s %s: %w", m.Type, m.Payload, err)
		}
	}
	var outs Outputs
	switch m.Type {
	case AddItem:
		if p.SKU == "" || p.Qty <= 0 {
			return nil, nil, fmt.Errorf("orders: AddItem needs a sku and a positive qty, got %s", m.Payload)
		}
		if st.Confirmed {
			outs = append(outs, out(AddItemRejected, itemPayload{SKU: p.SKU}))
			break
		}
		first := len(st.Lines) == 0
		st.Lines[p.SKU] += p.Qty
		outs = append(outs, out(ItemAdded, itemPayload{SKU: p.SKU, Qty: st.Lines[p.SKU]}))
		if first {
			outs = append(outs, out(FirstItemAdded, itemPayload{SKU: p.SKU}))
		}
	case RemoveItem:
		if p.SKU == "" {
			return nil, nil, fmt.Errorf("orders: RemoveItem needs a sku, got %s", m.Payload)
		}
		if _, ok := st.Lines[p.SKU]; ok && !st.Confirmed {
			delete(st.Lines, p.SKU)
			outs = append(outs, out(ItemRemoved, itemPayload{SKU: p.SKU}))
		}
	case Confirm:
		switch {
		case st.Confirmed:
			outs = append(outs, out(OrderRejected, map[string]string{"reason": "already confirmed"}))
		case len(st.Lines) == 0:
			outs = append(outs, out(OrderRejected, map[string]string{"reason": "empty"}))
		default:
			st.Confirmed = true
			items := 0
			for _, q := range st.Lines {
				items += q
			}
			outs = append(outs, out(OrderConfirmed, map[string]int{"items": items}))
		}
	default:
		return nil, nil, fmt.Errorf("orders: unknown message type %q", m.Type)
	}
	ns, err := EncodeState(st)
	if err != nil {
		return nil, nil, err
	}
	return ns, outs, nil
}

// AlreadyApplied implements AppliedDetector the way an engineer would for
// orders: a Confirm of a confirmed order, or a RemoveItem of an absent line,
// has "already been applied". An AddItem cannot be told from the state.
func (Orders) AlreadyApplied(s State, m Message) (bool, error) {
	var st OrderState
	if err := json.Unmarshal(s, &st); err != nil {
		return false, fmt.Errorf("orders: bad state %s: %w", s, err)
	}
	switch m.Type {
	case Confirm:
		return st.Confirmed, nil
	case RemoveItem:
		var p itemPayload
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			return false, fmt.Errorf("orders: bad payload of %s %s: %w", m.Type, m.Payload, err)
		}
		_, present := st.Lines[p.SKU]
		return !present, nil
	}
	return false, nil
}

// Workload implements Model: up to maxMessages messages over up to three
// orders, mostly AddItem. Everything shrinks toward one AddItem of one unit
// of sku "a" to order "o1".
func (Orders) Workload(maxMessages int) *rapid.Generator[Workload] {
	skus := []string{"a", "b", "c"}
	msg := func(orders int) *rapid.Generator[Message] {
		return rapid.Custom(func(t *rapid.T) Message {
			return orderMessage(t, orders, skus)
		})
	}
	return rapid.Custom(func(t *rapid.T) Workload {
		// Fewer orders mean more messages per order, where the bugs are.
		orders := rapid.IntRange(1, 3).Draw(t, "orders")
		return Workload(rapid.SliceOfN(msg(orders), 1, maxMessages).Draw(t, "messages")).Number()
	})
}

// orderMessage draws one message to one of the first orders orders.
func orderMessage(t *rapid.T, orders int, skus []string) Message {
	agg := fmt.Sprintf("o%d", rapid.IntRange(1, orders).Draw(t, "order"))
	kind := rapid.IntRange(0, 9).Draw(t, "kind")
	sku := skus[rapid.IntRange(0, len(skus)-1).Draw(t, "sku")]
	switch {
	case kind <= 6:
		qty := rapid.IntRange(1, 3).Draw(t, "qty")
		return Message{Aggregate: agg, Type: AddItem, Payload: payload(itemPayload{SKU: sku, Qty: qty})}
	case kind == 7:
		return Message{Aggregate: agg, Type: RemoveItem, Payload: payload(itemPayload{SKU: sku})}
	default:
		return Message{Aggregate: agg, Type: Confirm, Payload: payload(struct{}{})}
	}
}

func out(typ string, v any) Output { return Output{Type: typ, Payload: payload(v)} }

func payload(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("model: payload of %T cannot be marshalled: %v", v, err))
	}
	return b
}

func mustEncode(v any) State {
	s, err := EncodeState(v)
	if err != nil {
		panic(fmt.Sprintf("model: state of %T cannot be marshalled: %v", v, err))
	}
	return s
}
