package pgstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/internal/waitsfor"
)

// How long a statement runs before the store asks the server whether it
// waits for a lock, and how often it asks again while it runs.
const (
	lockCheckAfter = 500 * time.Microsecond
	lockCheckEvery = time.Millisecond
)

// lockWaits is a store's record of its transactions' lock waits under the
// harness's scheduler (see the package doc).
type lockWaits struct {
	mu    sync.Mutex
	sched adapters.LockScheduler
	open  map[uint32]*Tx // open transactions by server process id
	waits waitsfor.Graph[*Tx]
}

var _ adapters.LockWaiter = (*Store)(nil)

// SetLockScheduler implements adapters.LockWaiter. A store that runs as
// histories before format 1.3 did (Options.LockConflicts) keeps its lock
// timeout instead.
func (s *Store) SetLockScheduler(l adapters.LockScheduler) {
	s.locks.mu.Lock()
	defer s.locks.mu.Unlock()
	if s.lockConflicts {
		l = nil
	}
	s.locks.sched = l
}

func (l *lockWaits) opened(t *Tx) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open == nil {
		l.open = map[uint32]*Tx{}
	}
	l.open[t.pid] = t
}

// ended forgets t and makes the transactions that waited for it runnable:
// the server hands them the lock (or the next holder blocks them again).
func (l *lockWaits) ended(t *Tx) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[t.pid] == t {
		delete(l.open, t.pid)
	}
	l.waits.Done(t)
	for _, w := range l.waits.Waiters(t) {
		l.waits.Done(w)
		if l.sched != nil {
			l.sched.Unblock(w, "the transaction it waited for ended")
		}
	}
}

// statement runs f, a statement of t on ctx (what names what it touches;
// cancel cancels ctx). Under the scheduler it runs beside the task, which
// parks while the statement waits for a lock another transaction holds
// (see the package doc); a deadlock's victim has its statement canceled.
func (t *Tx) statement(ctx context.Context, cancel context.CancelFunc, what string, f func(ctx context.Context) error) error {
	l := &t.s.locks
	l.mu.Lock()
	sched := l.sched
	l.mu.Unlock()
	if sched == nil {
		return f(ctx)
	}
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	returned := false
	defer func() {
		if !returned { // the task is killed while it waits: leave nothing running on the connection
			cancel()
			<-done
		}
	}()
	check := time.NewTimer(lockCheckAfter)
	defer check.Stop()
	for {
		select {
		case err := <-done:
			returned = true
			return err
		case <-check.C:
		}
		holder, err := t.blocker(ctx)
		if err == nil && holder != nil {
			err = t.wait(sched, holder, what)
			if err != nil {
				// A deadlock's victim: the server cancels the statement
				// (a context's cancellation would close the connection)
				// and the transaction is aborted, as after PostgreSQL's
				// own deadlock error.
				if cerr := t.cancelStatement(); cerr != nil {
					cancel()
				}
				<-done
				returned = true
				return err
			}
		}
		if err != nil {
			cancel()
			<-done
			returned = true
			return err
		}
		check.Reset(lockCheckEvery)
	}
}

// blocker returns the open transaction of the store whose lock t's
// statement waits for, if any.
func (t *Tx) blocker(ctx context.Context) (*Tx, error) {
	var pids []uint32
	if err := t.s.pool.QueryRow(ctx, "SELECT pg_blocking_pids($1)", t.pid).Scan(&pids); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: a statement ran out of time waiting for a lock", adapters.ErrBackend)
		}
		return nil, classify(err)
	}
	l := &t.s.locks
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, pid := range pids {
		if h := l.open[pid]; h != nil && h != t {
			return h, nil
		}
	}
	return nil, nil // not waiting, or for a process that is not the run's
}

// wait records that t waits for holder, parks the task until the holder
// ends, and reports a deadlock if t is a cycle's victim.
func (t *Tx) wait(sched adapters.LockScheduler, holder *Tx, what string) error {
	l := &t.s.locks
	l.mu.Lock()
	victim, dead := l.waits.Wait(t, holder)
	if dead {
		victim.victim = true
		if victim != t {
			sched.Unblock(victim, "deadlock victim")
		}
	}
	l.mu.Unlock()
	if !t.victim {
		sched.Block(t, holder, what)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.victim {
		t.victim = false
		l.waits.Done(t)
		return fmt.Errorf("%w: deadlock detected while waiting for %s; this transaction was chosen to fail", adapters.ErrConflict, what)
	}
	return nil
}

// cancelStatement asks the server to cancel t's running statement.
func (t *Tx) cancelStatement() error {
	ctx, cancel := t.s.ctx()
	defer cancel()
	_, err := t.s.pool.Exec(ctx, "SELECT pg_cancel_backend($1)", t.pid)
	return err
}
