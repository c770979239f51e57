package service

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
)

// lateDelay is the delay of a late fault in service mode: the copy is
// published this long after the attempt of its delivery ended. It is
// longer than ONCECHECK_IN's duplicate window on NATS (natsInDuplicates),
// so the broker does not drop a copy with the original's id: it stands
// for a producer's retry that arrives after the window, however long
// the window is in production.
const lateDelay = 200 * time.Millisecond

// errDuplicate is a send the broker dropped as a duplicate of a message
// id it still remembers (JetStream's duplicate window).
var errDuplicate = errors.New("the broker dropped it as a duplicate of an id in its duplicate window")

// lateRetry bounds how long a late copy the broker drops as a duplicate
// is sent again, until the broker's duplicate window has let the id go.
const lateRetry = 2 * time.Second

// scheduleLate starts the late faults planned on the delivery of attempt
// a; rn.mu is held. The run is busy (not drained) until each copy is
// sent.
func (rn *run) scheduleLate(a *attempt) {
	for _, f := range rn.c.Plan.Faults {
		if f.Kind != faults.Late || f.At != a.n-1 {
			continue
		}
		rn.busy++
		rn.lateWaiting++
		rn.wg.Add(1)
		go func() {
			defer rn.wg.Done()
			rn.sendLate(a, f)
		}()
	}
}

// sendLate waits until attempt a has ended (acked, nacked, crashed or its
// ack dropped) or another attempt acknowledged its message, then f.Delay
// more, and publishes its message again: the
// same copy, with the same id (a producer's retry arriving after the
// broker's duplicate window), or, for the reissue variant, a new copy
// with a new id and the same key. A send the broker refuses is a harness
// error of the run.
func (rn *run) sendLate(a *attempt, f faults.Fault) {
	defer func() {
		rn.mu.Lock()
		rn.busy--
		rn.lateWaiting--
		rn.mu.Unlock()
	}()
	for {
		rn.mu.Lock()
		// The original is handled once its attempt ended or another
		// attempt acknowledged its message (the broker took it away from
		// an attempt that never ends: a pending entry claimed elsewhere).
		open := slices.Contains(a.proc.open, a) && !rn.ackedElsewhere(a)
		stopping := rn.stopping
		rn.mu.Unlock()
		if stopping {
			return
		}
		if !open {
			break
		}
		if sleepCtx(rn.ctx, drainPoll) != nil {
			return
		}
	}
	if !rn.waitLate(time.Duration(f.Delay)) {
		return
	}
	rn.mu.Lock()
	if rn.stopping {
		rn.mu.Unlock()
		return
	}
	m := a.msg
	if f.Variant == faults.LateReissue {
		rn.lates++
		m.ID = fmt.Sprintf("%s-l%d", a.msg.ID, rn.lates)
		rn.sent[m.ID] = m
		rn.add(histories.Event{Kind: histories.Send, Process: "sender", Message: &m, Fault: string(faults.Late),
			Detail: fmt.Sprintf("late re-issue of %s, %s after attempt #%d of delivery #%d ended", a.msg.ID, f.Delay, a.n, f.At+1)})
	} else {
		rn.add(histories.Event{Kind: histories.Requeue, Process: "sender", Message: &m, Fault: string(faults.Late),
			Detail: fmt.Sprintf("late: the sender publishes %s again, with the same id, %s after attempt #%d of delivery #%d ended (a producer's retry arriving after the broker's duplicate window)", m.ID, f.Delay, a.n, f.At+1)})
	}
	rn.mu.Unlock()
	ordered := rn.r.cfg.Model.Ordered()
	deadline := time.Now().Add(lateRetry)
	for {
		err := rn.r.b.send(rn.ctx, m, ordered)
		if err == nil {
			return
		}
		if errors.Is(err, errDuplicate) && time.Now().Before(deadline) && sleepCtx(rn.ctx, 20*time.Millisecond) == nil {
			continue
		}
		rn.mu.Lock()
		if rn.failed == nil {
			rn.failed = fmt.Errorf("service: the late copy of %s: %w", m.ID, err)
		}
		rn.mu.Unlock()
		return
	}
}

// waitLate waits d, and reports false when the run stops first (a delay
// longer than the run's bound leaves it stuck, not waiting).
func (rn *run) waitLate(d time.Duration) bool {
	until := time.Now().Add(d)
	for time.Now().Before(until) {
		rn.mu.Lock()
		stopping := rn.stopping
		rn.mu.Unlock()
		if stopping || sleepCtx(rn.ctx, min(drainPoll, time.Until(until))) != nil {
			return false
		}
	}
	return true
}
