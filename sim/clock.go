package sim

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// Tick is how far a run's time advances with each event it records.
const Tick = time.Millisecond

// Epoch returns the time a run starts at (Env.Now at its first step).
func Epoch() time.Time { return time.Date(2000, time.January, 1, 0, 0, 0, 0, time.UTC) }

// clock is a run's simulated time: a Tick per recorded event, plus the
// jumps taken while the run waited, idle, for a late copy.
type clock struct {
	jumped time.Duration
	late   []lateCopy // copies that arrive later, in plan order
}

// lateCopy is a copy that a late fault makes arrive at due (time since the
// epoch).
type lateCopy struct {
	due   time.Duration
	fault faults.Fault
	msg   model.Message
}

// elapsed returns the run's time since the epoch.
func (r *runner) elapsed() time.Duration {
	return time.Duration(len(r.events))*Tick + r.clock.jumped
}

// now returns the run's time.
func (r *runner) now() time.Time { return Epoch().Add(r.elapsed()) }

// scheduleLate notes the late faults of the at-th delivery, of copy msg,
// and offers the others it could have had.
func (r *runner) scheduleLate(at int, msg model.Message) {
	for _, d := range r.cfg.LateDelays {
		r.offer(faults.Fault{Kind: faults.Late, At: at, Delay: faults.Duration(d)})
		r.offer(faults.Fault{Kind: faults.Late, At: at, Variant: faults.LateReissue, Delay: faults.Duration(d)})
	}
	for _, f := range r.cfg.Plan.Late(at) {
		r.clock.late = append(r.clock.late, lateCopy{due: r.elapsed() + time.Duration(f.Delay), fault: f, msg: msg})
	}
}

// arrive puts the late copies that are due on the queue, in the order they
// fall due. When wait is set and none is due, the run's time first jumps
// to the earliest: nothing else can happen before it. It reports whether a
// copy arrived.
func (r *runner) arrive(wait bool) bool {
	if len(r.clock.late) == 0 {
		return false
	}
	first := 0
	for i, c := range r.clock.late {
		if c.due < r.clock.late[first].due {
			first = i
		}
	}
	if wait && r.clock.late[first].due > r.elapsed() {
		r.clock.jumped += r.clock.late[first].due - r.elapsed()
	}
	arrived := false
	for {
		first = -1
		for i, c := range r.clock.late {
			if c.due <= r.elapsed() && (first < 0 || c.due < r.clock.late[first].due) {
				first = i
			}
		}
		if first < 0 {
			return arrived
		}
		c := r.clock.late[first]
		r.clock.late = append(r.clock.late[:first], r.clock.late[first+1:]...)
		r.lateArrives(c)
		arrived = true
	}
}

// lateArrives puts a late copy on the queue: the same copy again, or a
// re-issue of it with a new id.
func (r *runner) lateArrives(c lateCopy) {
	m := c.msg
	if c.fault.Variant == faults.LateReissue {
		r.reissues++
		r.position++
		m.ID = fmt.Sprintf("%s-r%d", c.msg.ID, r.reissues)
		m.Position = r.position
		r.record(histories.Event{Kind: histories.Send, Process: "sender", Message: &m, Fault: string(faults.Late),
			Detail: fmt.Sprintf("late re-issue of %s, %s after delivery #%d", c.msg.ID, c.fault.Delay, c.fault.At+1)})
	} else if r.log != nil {
		r.record(histories.Event{Kind: histories.Requeue, Process: "broker", Fault: string(faults.Late),
			Detail: fmt.Sprintf("late: a producer's retry appends %s to its partition again, %s after delivery #%d", m.ID, c.fault.Delay, c.fault.At+1)})
	} else {
		r.record(histories.Event{Kind: histories.Requeue, Process: "broker", Fault: string(faults.Late),
			Detail: fmt.Sprintf("late: %s is delivered again, %s after delivery #%d", m.ID, c.fault.Delay, c.fault.At+1)})
	}
	r.enqueue(m)
}

// newRunID returns a run identity unique in the process (Env.RunID).
func newRunID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "run-" + hex.EncodeToString(b[:])
}
