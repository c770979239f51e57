package service

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// fromServer implements natsHooks: deliveries of input copies, and the
// confirmations of publishes a fault waits for.
func (rn *run) fromServer(c *proxyConn, f natsFrame) verdict {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	p := rn.procs[c.index]
	if p.gen != c.gen || p.dead {
		return verdict{cut: true}
	}
	if f.op == "MSG" || f.op == "HMSG" {
		if a := rn.failing[f.subject]; a != nil {
			delete(rn.failing, f.subject)
			rn.add(histories.Event{Kind: histories.Refused, Attempt: a.n, Process: p.name(), Fault: string(faults.PublishFailure), Detail: fmt.Sprintf("the broker stored the publish of attempt %d; the proxy turns its confirmation into an error", a.n)})
			return verdict{instead: msgFrame(f.subject, f.sid, publishRefused)}
		}
		if a := rn.confirms[f.subject]; a != nil {
			delete(rn.confirms, f.subject)
			rn.kill(p, a, faults.Fault{Kind: faults.Crash, At: a.n - 1, Point: faults.AfterPublish, Index: a.publishes - 1})
			return verdict{cut: true}
		}
	}
	if f.op != "HMSG" || !strings.HasPrefix(f.reply, "$JS.ACK.") || !strings.Contains(f.reply, "."+InStream+".") {
		return verdict{}
	}
	m, ok := rn.sent[f.header.Get(HeaderMsgID)]
	if !ok {
		return verdict{}
	}
	a := &attempt{n: len(rn.attempts) + 1, proc: p, msg: m, reply: f.reply}
	for _, fl := range rn.c.Plan.Faults {
		if fl.At == a.n-1 && (fl.Kind == faults.Crash || fl.Kind == faults.Redelivery || fl.Kind == faults.PublishFailure) {
			a.faults = append(a.faults, fl)
		}
	}
	rn.attempts = append(rn.attempts, a)
	if rn.first.IsZero() {
		rn.first = time.Now()
	}
	rn.byReply[f.reply] = a
	p.open = append(p.open, a)
	p.latest = a
	dm := model.Message{ID: m.ID, Key: m.Key, Aggregate: m.Aggregate, Type: m.Type}
	rn.add(histories.Event{Kind: histories.Deliver, Attempt: a.n, Process: p.name(), Message: &dm, Detail: "delivery count " + deliveryCount(f.reply)})
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

// deliveryCount reads the delivery count from a JetStream ack subject
// ($JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...).
func deliveryCount(reply string) string {
	t := strings.Split(reply, ".")
	for i, s := range t {
		if s == InStream && i+2 < len(t) {
			return t[i+2]
		}
	}
	return "?"
}

// fromClient implements natsHooks: acks of deliveries and publishes of
// outputs.
func (rn *run) fromClient(c *proxyConn, f natsFrame) verdict {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	p := rn.procs[c.index]
	if p.gen != c.gen || p.dead {
		return verdict{cut: true}
	}
	if f.op == "SUB" {
		if args := strings.Fields(string(f.raw)); len(args) >= 3 {
			c.subs[args[1]] = args[len(args)-1]
		}
		return verdict{}
	}
	if f.op != "PUB" && f.op != "HPUB" {
		return verdict{}
	}
	if a := rn.byReply[f.subject]; a != nil {
		return rn.ack(p, a, f)
	}
	if strings.HasPrefix(f.subject, OutSubject) {
		return rn.publish(c, p, f)
	}
	return verdict{}
}

// ack handles an acknowledgement of attempt a; rn.mu is held.
func (rn *run) ack(p *proc, a *attempt, f natsFrame) verdict {
	body := strings.TrimSpace(string(f.body))
	kind, detail := histories.Ack, body
	switch {
	case body == "" || body == "+ACK" || strings.HasPrefix(body, "+NXT"):
		detail = ""
	case strings.HasPrefix(body, "-NAK"):
		kind = histories.Nack
	case body == "+TERM" || strings.HasPrefix(body, "+TERM "):
		detail = "+TERM: the broker will not deliver it again"
	default: // +WPI, a progress report
		return verdict{}
	}
	if !slices.Contains(p.open, a) {
		rn.add(histories.Event{Kind: histories.Refused, Attempt: 0, Process: p.name(), Detail: fmt.Sprintf("a second ack (%s) of attempt %d", body, a.n)})
		return verdict{}
	}
	if kind == histories.Ack {
		for _, fl := range a.faults {
			switch {
			case fl.Kind == faults.Crash && fl.Point == faults.BeforeAck:
				rn.kill(p, a, fl)
				return verdict{cut: true}
			case fl.Kind == faults.Crash && fl.Point == AfterAck:
				rn.end(p, a, kind, detail)
				return verdict{after: func() {
					rn.mu.Lock()
					defer rn.mu.Unlock()
					rn.kill(p, a, fl)
				}}
			case fl.Kind == faults.Redelivery && fl.Variant == faults.AckLost:
				rn.add(histories.Event{Kind: histories.AckLost, Attempt: a.n, Process: p.name(), Fault: string(fl.Kind), Detail: Describe(fl)})
				rn.add(histories.Event{Kind: histories.Done, Attempt: a.n, Process: p.name()})
				p.open = slices.DeleteFunc(p.open, func(o *attempt) bool { return o == a })
				reply := a.reply
				return verdict{drop: true, after: func() { _ = rn.r.b.nc.Publish(reply, []byte("-NAK")) }}
			case fl.Kind == faults.Redelivery && fl.Variant == faults.LeaseExpired && fl.Index == 1:
				rn.busy++
				rn.mu.Unlock()
				rn.pause(p, a, fl) // the ack waits, then goes
				rn.mu.Lock()
				if p.dead || !slices.Contains(p.open, a) {
					return verdict{cut: p.dead}
				}
			}
		}
	}
	rn.end(p, a, kind, detail)
	return verdict{}
}

// end records an ack or nack and the end of the attempt; rn.mu is held.
func (rn *run) end(p *proc, a *attempt, kind histories.Kind, detail string) {
	rn.add(histories.Event{Kind: kind, Attempt: a.n, Process: p.name(), Detail: detail})
	rn.add(histories.Event{Kind: histories.Done, Attempt: a.n, Process: p.name()})
	p.open = slices.DeleteFunc(p.open, func(o *attempt) bool { return o == a })
}

// publish handles an output published by process p; rn.mu is held.
func (rn *run) publish(c *proxyConn, p *proc, f natsFrame) verdict {
	id := f.header.Get(HeaderMsgID)
	cause := f.header.Get(HeaderCause)
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
		rn.kill(p, a, *fl)
		return verdict{cut: true}
	}
	if pf != nil && pf.Variant == faults.Rejected {
		rn.add(histories.Event{Kind: histories.Refused, Attempt: a.n, Process: p.name(), Fault: string(pf.Kind), Detail: Describe(*pf)})
		if sid, ok := c.sid(f.reply); ok && f.reply != "" {
			return verdict{drop: true, back: msgFrame(f.reply, sid, publishRefused)}
		}
		return verdict{drop: true}
	}
	if id == "" {
		id = fmt.Sprintf("%s/no-id-%d", p.name(), len(rn.events)+1)
	}
	payload, err := model.Canonical(f.body)
	if err != nil {
		payload, _ = json.Marshal(string(f.body))
	}
	out := model.Message{ID: id, Type: strings.TrimPrefix(f.subject, OutSubject), Payload: payload, Causation: key}
	ev := histories.Event{Kind: histories.Publish, Process: p.name(), Message: &out}
	if a != nil {
		ev.Attempt = a.n
	} else {
		ev.Detail = "no open delivery of this process has the cause " + strconv.Quote(cause)
	}
	rn.add(ev)
	if pf != nil && pf.Variant == faults.LostConfirm && f.reply != "" {
		rn.failing[f.reply] = a
	}
	if fl != nil { // after-publish: kill as the confirmation comes back
		if f.reply == "" {
			fault := *fl
			return verdict{after: func() {
				rn.mu.Lock()
				defer rn.mu.Unlock()
				rn.kill(p, a, fault)
			}}
		}
		rn.confirms[f.reply] = a
	}
	return verdict{}
}

// publishRefused is the JetStream API error a refused publish gets.
var publishRefused = []byte(`{"error":{"code":503,"err_code":10077,"description":"oncecheck: publish refused (publish-failure fault)"}}`)
