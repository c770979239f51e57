package sim

import (
	"fmt"
	"runtime"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/histories"
)

// locks is the scheduler's side of a store's lock waits
// (adapters.LockScheduler): a task whose transaction waits for a row lock
// parks, blocked, and the scheduler runs the others until the store says
// the lock is released (or the waiter is a deadlock's victim).
type locks struct{ r *runner }

var _ adapters.LockScheduler = locks{}

// Block implements adapters.LockScheduler, on the waiting task's goroutine.
func (l locks) Block(waiter, holder adapters.StoreTx, what string) {
	r := l.r
	w, h := r.byInner[waiter], r.byInner[holder]
	if w == nil {
		// A transaction the harness did not open (the observer's): it
		// runs when no task does, so nothing can hold a lock it needs.
		panic(fmt.Sprintf("sim: a transaction outside the run waits for %s", what))
	}
	e := w.env
	ev := e.base(histories.Wait)
	ev.Tx, ev.Detail = w.n, "waits for "+what
	if h != nil {
		ev.Detail += fmt.Sprintf(", locked by %s (transaction %d)", h.env.proc.name, h.n)
	}
	r.record(ev)
	t := e.task
	t.blocked = true
	t.parked <- struct{}{}
	select {
	case <-t.resume:
	case <-r.kill:
		runtime.Goexit()
	}
	wake := e.base(histories.Wake)
	wake.Tx, wake.Detail = w.n, t.woken
	r.record(wake)
}

// Unblock implements adapters.LockScheduler: the waiter may run again; it
// records why when it does.
func (l locks) Unblock(waiter adapters.StoreTx, why string) {
	w := l.r.byInner[waiter]
	if w == nil || w.env.task == nil || !w.env.task.blocked {
		return
	}
	w.env.task.blocked, w.env.task.woken = false, why
}

// blocked reports whether some task waits for a lock.
func (r *runner) blocked() bool {
	for _, p := range r.procs {
		if p.task != nil && p.task.blocked {
			return true
		}
	}
	return false
}
