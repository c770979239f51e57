package main

import (
	"encoding/json"
	"fmt"
)

// order is the state of one order, as the orders table keeps it.
type order struct {
	Confirmed bool           `json:"confirmed"`
	Lines     map[string]int `json:"lines"`
}

// event is an event the service publishes.
type event struct {
	Type    string
	Payload any
}

type item struct {
	Qty int    `json:"qty,omitempty"`
	SKU string `json:"sku"`
}

// apply is the business logic: it changes the order and says what
// happened.
func apply(o *order, typ string, body []byte) ([]event, error) {
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
			return []event{{"AddItemRejected", item{SKU: p.SKU}}}, nil
		}
		first := len(o.Lines) == 0
		o.Lines[p.SKU] += p.Qty
		evs := []event{{"ItemAdded", item{SKU: p.SKU, Qty: o.Lines[p.SKU]}}}
		if first {
			evs = append(evs, event{"FirstItemAdded", item{SKU: p.SKU}})
		}
		return evs, nil
	case "RemoveItem":
		if _, ok := o.Lines[p.SKU]; ok && !o.Confirmed {
			delete(o.Lines, p.SKU)
			return []event{{"ItemRemoved", item{SKU: p.SKU}}}, nil
		}
		return nil, nil
	case "Confirm":
		switch {
		case o.Confirmed:
			return []event{{"OrderRejected", map[string]string{"reason": "already confirmed"}}}, nil
		case len(o.Lines) == 0:
			return []event{{"OrderRejected", map[string]string{"reason": "empty"}}}, nil
		}
		o.Confirmed = true
		items := 0
		for _, q := range o.Lines {
			items += q
		}
		return []event{{"OrderConfirmed", map[string]int{"items": items}}}, nil
	}
	return nil, fmt.Errorf("unknown message type %q", typ)
}
