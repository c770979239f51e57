// Package orders is the business logic of the example orders services
// (examples/service and its twins on other brokers): the state of an
// order and what each command does to it. Each example is a program of
// its own around it: its broker client, its transactions, its acks.
package orders

import (
	"encoding/json"
	"fmt"
)

// Order is the state of one order, as the orders table keeps it.
type Order struct {
	Confirmed bool           `json:"confirmed"`
	Lines     map[string]int `json:"lines"`
}

// Event is an event the service publishes.
type Event struct {
	Type    string
	Payload any
}

type item struct {
	Qty int    `json:"qty,omitempty"`
	SKU string `json:"sku"`
}

// Apply is the business logic: it changes the order and says what
// happened.
func Apply(o *Order, typ string, body []byte) ([]Event, error) {
	if o.Lines == nil {
		o.Lines = map[string]int{}
	}
	var p item
	if len(body) > 0 {
		if err := json.Unmarshal(body, &p); err != nil {
			return nil, fmt.Errorf("bad %s body %s: %w", typ, body, err)
		}
	}
	switch typ {
	case "AddItem":
		if o.Confirmed {
			return []Event{{"AddItemRejected", item{SKU: p.SKU}}}, nil
		}
		first := len(o.Lines) == 0
		o.Lines[p.SKU] += p.Qty
		evs := []Event{{"ItemAdded", item{SKU: p.SKU, Qty: o.Lines[p.SKU]}}}
		if first {
			evs = append(evs, Event{"FirstItemAdded", item{SKU: p.SKU}})
		}
		return evs, nil
	case "RemoveItem":
		if _, ok := o.Lines[p.SKU]; ok && !o.Confirmed {
			delete(o.Lines, p.SKU)
			return []Event{{"ItemRemoved", item{SKU: p.SKU}}}, nil
		}
		return nil, nil
	case "Confirm":
		switch {
		case o.Confirmed:
			return []Event{{"OrderRejected", map[string]string{"reason": "already confirmed"}}}, nil
		case len(o.Lines) == 0:
			return []Event{{"OrderRejected", map[string]string{"reason": "empty"}}}, nil
		}
		o.Confirmed = true
		items := 0
		for _, q := range o.Lines {
			items += q
		}
		return []Event{{"OrderConfirmed", map[string]int{"items": items}}}, nil
	}
	return nil, fmt.Errorf("unknown message type %q", typ)
}
