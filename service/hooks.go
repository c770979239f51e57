package service

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// alive reports whether the process of connection c is still the one
// that opened it: a frame of a killed process, or of its previous life, is
// cut.
func (rn *run) alive(c *proxyConn) bool {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	p := rn.procs[c.index]
	return p.gen == c.gen && !p.dead
}

// delivered implements hooks: a copy of an input message reaches a
// process, a new attempt (or the first strike of a fault planned on it).
func (rn *run) delivered(c *proxyConn, d delivery) verdict {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	p := rn.procs[c.index]
	if p.gen != c.gen || p.dead {
		return verdict{cut: true}
	}
	m, ok := rn.sent[d.id]
	if !ok {
		return verdict{}
	}
	a := &attempt{n: len(rn.attempts) + 1, proc: p, msg: m, token: d.token}
	for _, fl := range rn.c.Plan.Faults {
		if fl.At == a.n-1 && (fl.Kind == faults.Crash || fl.Kind == faults.Redelivery || fl.Kind == faults.PublishFailure || fl.Kind == faults.CutConnection) {
			a.faults = append(a.faults, fl)
		}
	}
	rn.attempts = append(rn.attempts, a)
	if rn.first.IsZero() {
		rn.first = time.Now()
	}
	rn.byToken[d.token] = a
	rn.reached[d.id] = true
	p.open = append(p.open, a)
	p.latest = a
	dm := model.Message{ID: m.ID, Key: m.Key, Aggregate: m.Aggregate, Type: m.Type}
	rn.add(histories.Event{Kind: histories.Deliver, Attempt: a.n, Process: p.name(), Message: &dm, Detail: "delivery count " + d.count})
	rn.scheduleLate(a)
	var restarts []faults.Fault
	for _, fl := range rn.c.Plan.Faults {
		if fl.Kind == faults.BrokerRestart && fl.At == a.n-1 {
			restarts = append(restarts, fl)
		}
	}
	if len(restarts) > 0 {
		// The broker stops as the proxy forwards the delivery: in a
		// goroutine of the run's own, so that the run stays busy until
		// the broker is back whatever becomes of this connection.
		rn.busy += len(restarts)
		rn.wg.Add(1)
		go func() {
			defer rn.wg.Done()
			for _, fl := range restarts {
				rn.restartBroker(a, fl)
			}
		}()
		for _, fl := range a.faults {
			if fl.Kind == faults.Crash && fl.Point == faults.BeforeHandle {
				rn.kill(p, a, fl)
				return verdict{cut: true}
			}
		}
		return verdict{}
	}
	for _, fl := range a.faults {
		switch {
		case fl.Kind == faults.Crash && fl.Point == faults.BeforeHandle:
			rn.kill(p, a, fl)
			return verdict{cut: true}
		case fl.Kind == faults.Redelivery && fl.Variant == faults.LeaseExpired && fl.Index == 0:
			rn.busy++
			return verdict{after: func() { rn.pause(p, a, fl) }}
		}
	}
	return verdict{}
}

// acked implements hooks: a process acknowledges (or, nack, negatively
// acknowledges) the delivery its token names. A token no delivery of the
// run has is forwarded as is.
func (rn *run) acked(c *proxyConn, token string, nack bool, detail string) verdict {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	p := rn.procs[c.index]
	if p.gen != c.gen || p.dead {
		return verdict{cut: true}
	}
	a := rn.byToken[token]
	if a == nil {
		return verdict{}
	}
	kind := histories.Ack
	if nack {
		kind = histories.Nack
	}
	if !slices.Contains(p.open, a) {
		what := "ack"
		if nack {
			what = "nack"
		}
		rn.add(histories.Event{Kind: histories.Refused, Attempt: 0, Process: p.name(), Detail: fmt.Sprintf("a second %s of attempt %d %s", what, a.n, detail)})
		return verdict{}
	}
	if kind == histories.Ack {
		for _, fl := range a.faults {
			switch {
			case fl.Kind == faults.Crash && fl.Point == faults.BeforeAck:
				rn.killAt(p, a, fl, rn.lastWrite(a))
				return verdict{cut: true}
			case fl.Kind == faults.Crash && fl.Point == AfterAck:
				rn.end(p, a, kind, detail)
				return verdict{after: func() {
					rn.mu.Lock()
					defer rn.mu.Unlock()
					rn.killAt(p, a, fl, rn.lastWrite(a))
				}}
			case fl.Kind == faults.Redelivery && fl.Variant == faults.AckLost:
				rn.add(histories.Event{Kind: histories.AckLost, Attempt: a.n, Process: p.name(), Fault: string(fl.Kind), Detail: Describe(fl)})
				rn.add(histories.Event{Kind: histories.Done, Attempt: a.n, Process: p.name()})
				p.open = slices.DeleteFunc(p.open, func(o *attempt) bool { return o == a })
				token := a.token
				return verdict{drop: true, after: func() { rn.r.b.requeue([]string{token}) }}
			case fl.Kind == faults.Redelivery && fl.Variant == faults.LeaseExpired && fl.Index == 1:
				alive := rn.pauseHeld(p, a, fl, "", c.gen) // the ack waits, then goes
				if !alive || !slices.Contains(p.open, a) {
					return verdict{cut: !alive}
				}
			}
		}
	}
	rn.end(p, a, kind, detail)
	return verdict{}
}

// pauseHeld pauses p at fault fl of its attempt a while the proxy holds
// what the fault struck at (a reply, a COMMIT, an ack); rn.mu is held, and
// released while the process stands still. where, when not empty, says
// what was held, in the pause's event. It reports whether the process of
// generation gen is still alive after.
func (rn *run) pauseHeld(p *proc, a *attempt, fl faults.Fault, where string, gen int) bool {
	rn.busy++
	rn.mu.Unlock()
	rn.pause(p, a, fl)
	rn.mu.Lock()
	if where != "" {
		rn.notePause(p, a, where)
	}
	return !p.dead && p.gen == gen
}

// end records an ack or nack and the end of the attempt; rn.mu is held.
func (rn *run) end(p *proc, a *attempt, kind histories.Kind, detail string) {
	rn.add(histories.Event{Kind: kind, Attempt: a.n, Process: p.name(), Detail: detail})
	rn.add(histories.Event{Kind: histories.Done, Attempt: a.n, Process: p.name()})
	p.open = slices.DeleteFunc(p.open, func(o *attempt) bool { return o == a })
	a.acked = a.acked || kind == histories.Ack
}

// published implements hooks: a process publishes an output.
func (rn *run) published(c *proxyConn, o output) verdict {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	p := rn.procs[c.index]
	if p.gen != c.gen || p.dead {
		return verdict{cut: true}
	}
	id, cause := o.id, o.cause
	key := cause
	if m, ok := rn.sent[cause]; ok {
		key = m.Key
	}
	var a *attempt
	for _, o := range slices.Backward(p.open) {
		if o.msg.Key == key {
			a = o
			break
		}
	}
	if a == nil && p.latest != nil && p.latest.msg.Key == key {
		a = p.latest
	}
	var fl, pf *faults.Fault
	index := 0
	if a != nil {
		index = a.publishes
		a.publishes++
		for i, x := range a.faults {
			if x.Kind == faults.Crash && (x.Point == faults.BeforePublish || x.Point == faults.AfterPublish) && x.Index == index {
				fl = &a.faults[i]
			}
			if x.Kind == faults.PublishFailure && x.Index == index {
				pf = &a.faults[i]
			}
		}
	}
	if fl != nil && fl.Point == faults.BeforePublish {
		rn.killAt(p, a, *fl, rn.lastWrite(a))
		return verdict{cut: true}
	}
	if pf != nil && pf.Variant == faults.Rejected {
		rn.add(histories.Event{Kind: histories.Refused, Attempt: a.n, Process: p.name(), Fault: string(pf.Kind), Detail: Describe(*pf)})
		return verdict{refuse: true}
	}
	if id == "" {
		id = fmt.Sprintf("%s/no-id-%d", p.name(), len(rn.events)+1)
	}
	payload, err := model.Canonical(o.body)
	if err != nil {
		payload, _ = json.Marshal(string(o.body))
	}
	out := model.Message{ID: id, Type: o.typ, Payload: payload, Causation: key}
	ev := histories.Event{Kind: histories.Publish, Process: p.name(), Message: &out}
	if a != nil {
		ev.Attempt = a.n
	} else {
		ev.Detail = "no open delivery of this process has the cause " + strconv.Quote(cause)
	}
	rn.add(ev)
	if pf != nil && pf.Variant == faults.LostConfirm && o.confirmed {
		return verdict{atConfirm: func() verdict {
			rn.mu.Lock()
			defer rn.mu.Unlock()
			rn.add(histories.Event{Kind: histories.Refused, Attempt: a.n, Process: p.name(), Fault: string(faults.PublishFailure), Detail: fmt.Sprintf("the broker stored the publish of attempt %d; the proxy turns its confirmation into an error", a.n)})
			return verdict{refuse: true}
		}}
	}
	if fl != nil { // after-publish: kill as the confirmation comes back
		fault := *fl
		kill := func() verdict {
			rn.mu.Lock()
			defer rn.mu.Unlock()
			rn.killAt(p, a, fault, rn.lastWrite(a))
			return verdict{cut: true}
		}
		if !o.confirmed {
			return verdict{after: func() { kill() }}
		}
		return verdict{atConfirm: kill}
	}
	return verdict{}
}
