// Package sim is the deterministic simulation: a broker with at-least-once
// delivery, consumer processes that run the adapter's handler and are rebuilt
// from its factory after a crash, an optional dispatcher process, the drain
// phase, and one scheduler that decides every step. The run is on the store
// it is given (Config.Store); the simulation knows no backend.
//
// A scheduled run is a pure function of (workload, plan, strategy): there is no wall
// clock, no global randomness and no dependence on map or goroutine order.
// Each attempt (or dispatcher pass) runs on a goroutine of its own, but only
// one piece of code runs at a time: a task runs until it reaches a boundary
// (begin, write, commit, publish, ack, an adapter's named point), hands
// control back to the scheduler, and waits to be resumed. The scheduler
// keeps running the current task until the plan preempts it (a "concurrent"
// fault), then moves round-robin to the next process that can act. A crash
// stops a task at a boundary with runtime.Goexit.
//
// A free-running run (Config.FreeRunning) has no scheduler: its processes
// run truly in parallel and meet in the store as they happen. It is not a
// function of its inputs; its history is the evidence.
package sim

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/memcache"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// Config describes one run.
type Config struct {
	Model    model.Model
	Strategy adapters.Strategy
	Workload model.Workload
	Plan     faults.Plan
	// MaxDeliveries bounds the deliveries (and dispatcher passes) before
	// the run is declared stuck; 0 picks 10 per message and per fault,
	// plus 20.
	MaxDeliveries int
	// Explore lists the fault kinds whose opportunities Explore records.
	Explore []faults.Kind
	// Store is the backend's store, empty (see adapters.Store.Reset); a run
	// of free-running processes wants one whose writes wait for locks (see
	// adapters.StoreOptions.LockWait).
	Store adapters.Store
	// ReadsPreempt makes every read (Get, GetForUpdate, Scan, Claim, a SQL
	// query) a scheduling point too, right after it: a concurrent fault
	// may preempt a task between a read and the write that depends on it,
	// where lost updates and check-then-act races live. Histories of
	// format 1.1 were run without it.
	ReadsPreempt bool
	// FreeRunning runs the processes truly in parallel, without the
	// scheduler: Consumers consumers (default 4) and the dispatcher take
	// deliveries and passes as they come, and their transactions meet in the
	// store as they happen (on PostgreSQL: real lock waits, serialization
	// failures and deadlocks, each a nack and a redelivery). The plan's
	// crashes, redeliveries, reorders, publish failures and re-issues still
	// apply, to the n-th delivery or pass; its preemptions do not. Such a run
	// is not a function of its seed: the history it records is the evidence.
	FreeRunning bool
	Consumers   int
	// Format12 runs as histories of format 1.2 and before ran: a
	// lease-expired copy's lease expires as it is delivered, and a stuck
	// run observes nothing. Otherwise the lease expires at the attempt's
	// scheduling point the fault names, and the holder is preempted there
	// (another consumer takes the copy while the first still works on
	// it), and a stuck run's state is observed once its stuck tasks are
	// gone.
	Format12 bool
	// Events, when it has capacity, is the buffer the run records into
	// (from its start; what it held is overwritten), so that a campaign
	// can reuse the buffer of a history it dropped.
	Events []histories.Event
	// Cache is the store behind Env.Cache, empty (see
	// adapters.CacheStore.Reset); nil gives the run an in-memory one.
	Cache adapters.CacheStore
	// RunID is what Env.RunID returns; empty gives the run a fresh one.
	RunID string
	// LateDelays are the delays of the late faults Explore offers (see
	// faults.LateDelays).
	LateDelays []time.Duration
	// Broker is the broker the consumers read from: BrokerQueue (""), the
	// default, or BrokerLog, a partitioned log and a consumer group
	// (logbroker.go). The log broker runs scheduled runs only, not
	// FreeRunning or Format12 ones.
	Broker string
}

// Opportunity is a fault that could have been injected during a run: the
// plan plus this fault runs identically up to Step, and then differently.
type Opportunity struct {
	// Step is the number of events recorded when the fault would act.
	Step int
	// Seq orders opportunities of one run: it is the opportunity's index.
	Seq   int
	Fault faults.Fault
}

// Explore runs like Run and also returns every opportunity the run offered
// for one more fault of the kinds in cfg.Explore, in the order they came.
// Opportunities are only listed where the fault would change something: a
// reorder needs copies behind the head, a preemption another process able
// to act, a rejected batch its first publish.
func Explore(cfg Config) ([]histories.Event, []Opportunity, error) {
	var opps []Opportunity
	events, err := run(cfg, &opps)
	return events, opps, err
}

// ErrInfrastructure wraps failures of the run itself (an adapter that
// panicked, a store that failed): the verdict is inconclusive.
var ErrInfrastructure = errors.New("infrastructure failure")

// boundariesPerDelivery bounds the scheduling boundaries per delivery before
// a run is declared stuck (a handler looping between boundaries).
const boundariesPerDelivery = 200

// Run executes the run and returns its events.
func Run(cfg Config) ([]histories.Event, error) { return run(cfg, nil) }

func run(cfg Config, opps *[]Opportunity) ([]histories.Event, error) {
	if cfg.Model == nil || cfg.Strategy.NewHandler == nil {
		return nil, errors.New("sim: a model and a strategy are required")
	}
	if err := cfg.Plan.Validate(); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	bound := cfg.MaxDeliveries
	if bound == 0 {
		bound = 10*len(cfg.Workload) + 10*len(cfg.Plan.Faults) + 20
	}
	store := cfg.Store
	if store == nil {
		return nil, errors.New("sim: a store is required")
	}
	broker, err := ParseBroker(cfg.Broker)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if broker == BrokerLog && (cfg.FreeRunning || cfg.Format12) {
		return nil, errLogConfig
	}
	r := &runner{
		cfg:      cfg,
		store:    store,
		inflight: map[int]model.Message{},
		byInner:  map[adapters.StoreTx]*tx{},
		explore:  map[faults.Kind]bool{},
		bound:    bound,
		kill:     make(chan struct{}),
		position: int64(len(cfg.Workload)),
		events:   cfg.Events[:0],
		opps:     opps,
		cache:    cfg.Cache,
		runID:    cfg.RunID,
	}
	if r.cache == nil {
		r.cache = memcache.New()
	}
	if broker == BrokerLog {
		r.log = newLogBroker(cfg.Plan.ConsumerCount())
	}
	if r.runID == "" {
		r.runID = newRunID()
	}
	if r.events == nil {
		// Runs record about ten events per message, rarely over forty.
		r.events = make([]histories.Event, 0, 12*len(cfg.Workload)+32)
	}
	for _, k := range cfg.Explore {
		r.explore[k] = true
	}
	r.horizonDeliveries, r.horizonPasses, r.horizonBoundaries = cfg.Plan.Horizon()
	lw, waits := store.(adapters.LockWaiter)
	if waits && !cfg.FreeRunning {
		lw.SetLockScheduler(locks{r})
		defer lw.SetLockScheduler(nil)
	}
	if cfg.FreeRunning {
		r.free, r.ended = true, make(chan *task)
		err = r.runFree()
	} else {
		err = r.run()
	}
	r.shutdown()
	for _, t := range r.txs {
		if !t.finished {
			_ = t.inner.Abort() // a parked task's transaction, of a stuck run
		}
	}
	if err == nil && r.undrained && !cfg.Format12 {
		// What did drain is compared too (format 1.3): the state is
		// observed once the stuck tasks are gone, their transactions
		// aborted as a crash would.
		r.killed = false
		err = r.observe()
	}
	if err != nil {
		return r.events, fmt.Errorf("%w: %v", ErrInfrastructure, err)
	}
	return r.events, nil
}

type process struct {
	name       string
	index      int
	kind       faults.Process
	handler    adapters.Handler
	dispatcher adapters.Dispatcher
	alive      bool
	started    bool
	task       *task // the attempt or pass in progress, nil when idle
}

// task is an attempt or a dispatcher pass running on its own goroutine.
type task struct {
	env      *env
	resume   chan struct{}
	parked   chan struct{}
	done     bool // set by the task goroutine before its last park
	returned bool // fn returned (as opposed to crashing)
	err      error
	panicked any
	busy     bool   // a dispatcher pass found work
	blocked  bool   // it waits for a row lock (see locks)
	woken    string // why it may go on after a wait
}

type runner struct {
	cfg      Config
	store    adapters.Store
	failure  error // the backend failed: the run stops
	events   []histories.Event
	queue    []model.Message       // copies waiting for delivery, in order
	log      *logBroker            // the log broker, nil on the queue broker
	inflight map[int]model.Message // unacked copy of each running attempt

	procs   []*process
	current *process
	preempt bool
	// leaseSwitch says the preemption is a lease's expiry, not a
	// concurrent fault: the timeline says so.
	leaseSwitch bool
	due         bool // a dispatcher pass is due
	// finished counts consumer attempts that ended; a dispatcher pass
	// that began before the last of them may not have seen its outbox
	// rows (its snapshot is older), so another pass is due.
	finished int
	position int64
	reissues int

	deliveries, passes, boundaries                      int
	horizonDeliveries, horizonPasses, horizonBoundaries int
	bound                                               int
	ids                                                 int
	txs                                                 []*tx
	byInner                                             map[adapters.StoreTx]*tx
	drained                                             bool
	undrained                                           bool // the run ended stuck

	kill    chan struct{}
	killed  bool
	wg      sync.WaitGroup
	workers []*worker // idle workers, waiting for a task

	opps    *[]Opportunity // nil unless exploring
	explore map[faults.Kind]bool

	clock clock               // the run's time and its late copies (clock.go)
	cache adapters.CacheStore // behind Env.Cache (cache.go)
	runID string

	free  bool       // a free-running run (Config.FreeRunning)
	mu    sync.Mutex // the runner's state, in a free-running run
	ended chan *task // tasks that ended, in a free-running run
}

// harness runs f, which reads and writes the runner's state: under the
// runner's mutex in a free-running run, where tasks run in parallel, and
// directly otherwise, where one goroutine runs at a time. f may end the
// goroutine (a crash): the mutex is released on the way out.
func (r *runner) harness(f func()) {
	if r.free {
		r.mu.Lock()
		defer r.mu.Unlock()
	}
	f()
}

// offer records an opportunity for a fault of kind f.Kind, if exploring.
func (r *runner) offer(f faults.Fault) {
	if r.opps == nil || r.killed || !r.explore[f.Kind] {
		return
	}
	*r.opps = append(*r.opps, Opportunity{Step: len(r.events), Seq: len(*r.opps), Fault: f})
}

// othersCanAct reports whether a process other than p could run now.
func (r *runner) othersCanAct(p *process) bool {
	for _, q := range r.procs {
		if q != p && r.canAct(q) {
			return true
		}
	}
	return false
}

func (r *runner) record(ev histories.Event) {
	if r.killed {
		return
	}
	ev.Step = len(r.events) + 1
	r.events = append(r.events, ev)
}

// shutdown stops tasks still parked (a stuck or failed run) and waits for
// their goroutines to end.
func (r *runner) shutdown() {
	r.killed = true
	close(r.kill)
	r.wg.Wait()
}

// setUp creates the processes and sends the workload.
func (r *runner) setUp(consumers int) {
	for i := range consumers {
		r.procs = append(r.procs, &process{name: fmt.Sprintf("consumer-%d", i+1), index: i, kind: faults.Consumer})
	}
	if r.cfg.Strategy.NewDispatcher != nil {
		r.procs = append(r.procs, &process{name: "dispatcher-1", index: len(r.procs), kind: faults.Dispatcher})
	}
	for i := range r.cfg.Workload {
		m := r.cfg.Workload[i]
		r.record(histories.Event{Kind: histories.Send, Process: "sender", Message: &m})
		r.enqueue(m)
	}
	if r.log != nil {
		all := make([]int, consumers)
		for i := range all {
			all[i] = i
		}
		r.log.join(all...)
		r.recordRebalance("the consumers join the group", "")
	}
}

// enqueue puts a copy the sender sent, or a late copy, on the broker: at
// the tail of the queue, or on the log, at the end of its partition.
func (r *runner) enqueue(m model.Message) {
	if r.log != nil {
		r.log.produce(m)
		return
	}
	r.queue = append(r.queue, m)
}

// drainDue records the drain once no task runs and the plan's faults are
// behind.
func (r *runner) drainDue() {
	if !r.drained && r.idle() && r.deliveries >= r.horizonDeliveries && r.passes >= r.horizonPasses && r.boundaries >= r.horizonBoundaries {
		r.drained = true
		r.record(histories.Event{Kind: histories.Drain, Process: "broker"})
	}
}

// runFree runs a free-running run: every process that can act gets a task
// at once, the tasks run in parallel, and the loop waits for any of them to
// end. The loop holds the runner's mutex except while it waits.
func (r *runner) runFree() error {
	consumers := r.cfg.Consumers
	if consumers <= 0 {
		consumers = 4
	}
	r.mu.Lock()
	r.setUp(max(consumers, r.cfg.Plan.ConsumerCount()))
	running := 0
	for r.failure == nil {
		exhausted := r.deliveries >= r.bound || r.passes >= r.bound
		for _, p := range r.procs {
			if exhausted || p.task != nil || !r.canAct(p) {
				continue
			}
			r.start(p)
			if p.kind == faults.Consumer {
				r.deliver(p)
			} else {
				r.dispatch(p)
			}
			running++ // started as its worker took it
		}
		if running == 0 {
			r.drainDue()
			if !slices.ContainsFunc(r.procs, r.canAct) && r.arrive(true) {
				continue
			}
			if exhausted && (len(r.queue) > 0 || r.due) {
				r.stuck()
				r.mu.Unlock()
				return nil
			}
			if !slices.ContainsFunc(r.procs, r.canAct) {
				break
			}
			continue
		}
		r.mu.Unlock()
		t := <-r.ended
		r.mu.Lock()
		running--
		p := t.env.proc
		p.task = nil
		if err := r.finish(p, t); err != nil {
			r.mu.Unlock()
			return err
		}
	}
	failure := r.failure
	r.mu.Unlock()
	if failure != nil {
		return failure
	}
	return r.observe()
}

func (r *runner) run() error {
	r.setUp(r.cfg.Plan.ConsumerCount())
	for {
		r.drainDue()
		r.arrive(false)
		p := r.next()
		if p == nil {
			if r.arrive(true) {
				continue
			}
			if r.blocked() {
				// Every task left waits for a lock that a transaction
				// of its own process holds: it waits forever.
				r.stuck()
				return nil
			}
			break
		}
		if p.task == nil && (r.deliveries >= r.bound || r.passes >= r.bound) || r.boundaries >= boundariesPerDelivery*r.bound {
			r.stuck()
			return nil
		}
		if err := r.advance(p); err != nil {
			return err
		}
	}
	return r.observe()
}

// idle reports whether no attempt or pass is in progress.
func (r *runner) idle() bool {
	for _, p := range r.procs {
		if p.task != nil {
			return false
		}
	}
	return true
}

// canAct reports whether p has something to do.
func (r *runner) canAct(p *process) bool {
	switch {
	case p.task != nil:
		return !p.task.blocked
	case p.kind == faults.Consumer && r.log != nil:
		return r.log.canTake(p.index)
	case p.kind == faults.Consumer:
		return len(r.queue) > 0
	default:
		return r.due
	}
}

// next picks the process to advance: the current one unless it is idle or
// preempted, otherwise the next one round-robin that can act.
func (r *runner) next() *process {
	cur := r.current
	if cur != nil && cur.task != nil && !cur.task.blocked && !r.preempt {
		return cur
	}
	preempted := r.preempt
	r.preempt = false
	start := 0
	if cur != nil {
		start = cur.index + 1
	}
	for i := range r.procs {
		p := r.procs[(start+i)%len(r.procs)]
		if p == cur || !r.canAct(p) {
			continue
		}
		if preempted && cur != nil && cur.task != nil {
			ev := histories.Event{Kind: histories.Switch, Process: cur.name, Attempt: cur.task.env.attempt, Pass: cur.task.env.pass,
				Detail: "preempted: " + p.name + " runs", Fault: string(faults.Concurrent)}
			if r.leaseSwitch {
				ev.Detail, ev.Fault = "its lease expired: "+p.name+" runs", string(faults.Redelivery)
			}
			r.record(ev)
		}
		r.leaseSwitch = false
		return p
	}
	if cur != nil && r.canAct(cur) {
		return cur
	}
	return nil
}

func (r *runner) stuck() {
	var left []string
	for _, m := range r.queue {
		left = append(left, m.ID)
	}
	var running []string
	for _, p := range r.procs {
		if p.task != nil {
			what := " in "
			if p.task.blocked {
				what = " waiting for a lock in "
			}
			running = append(running, p.name+what+p.task.env.where())
		}
	}
	queued := len(r.queue)
	if r.log != nil {
		queued, left = r.logStuck()
	}
	detail := fmt.Sprintf("after %d deliveries and %d dispatcher passes, %d copies are still queued (%s)",
		r.deliveries, r.passes, queued, strings.Join(left, ", "))
	if len(running) > 0 {
		detail += "; still running: " + strings.Join(running, ", ")
	}
	if r.due && queued == 0 {
		detail += "; the dispatcher still finds work"
	}
	r.record(histories.Event{Kind: histories.Undrained, Process: "broker", Detail: detail})
	r.undrained = true
}

func (r *runner) start(p *process) {
	if p.alive {
		return
	}
	if p.started {
		r.record(histories.Event{Kind: histories.Restart, Process: p.name})
	}
	p.started, p.alive = true, true
	if p.kind == faults.Dispatcher {
		p.dispatcher = r.cfg.Strategy.NewDispatcher()
	} else {
		p.handler = r.cfg.Strategy.NewHandler()
	}
}

// advance runs p until its task parks at the next boundary or ends,
// starting a new attempt or pass when p is idle.
func (r *runner) advance(p *process) error {
	r.current = p
	if p.task == nil {
		r.start(p)
		if p.kind == faults.Consumer {
			r.deliver(p) // the task starts as its worker takes it
		} else {
			r.dispatch(p)
		}
	} else {
		p.task.resume <- struct{}{}
	}
	t := p.task
	<-t.parked
	if r.failure != nil {
		return r.failure
	}
	if !t.done {
		return nil
	}
	p.task = nil
	return r.finish(p, t)
}

func (r *runner) deliver(p *process) {
	at := r.deliveries
	r.deliveries++
	for i := range r.cfg.Workload {
		r.offer(faults.Fault{Kind: faults.Reissue, At: at, Index: i})
	}
	for _, idx := range r.cfg.Plan.ReissuesBefore(at) {
		if len(r.cfg.Workload) == 0 {
			break
		}
		orig := r.cfg.Workload[idx%len(r.cfg.Workload)]
		r.reissues++
		r.position++
		m := orig
		m.ID = fmt.Sprintf("%s-r%d", orig.ID, r.reissues)
		m.Position = r.position
		r.record(histories.Event{Kind: histories.Send, Process: "sender", Message: &m,
			Detail: "re-issue of " + orig.ID, Fault: string(faults.Reissue)})
		r.enqueue(m)
	}
	attempt := at + 1
	ev := histories.Event{Kind: histories.Deliver, Process: p.name, Attempt: attempt}
	var (
		msg model.Message
		pos logPos
	)
	if r.log != nil {
		msg, pos = r.logTake(p, at, &ev)
	} else {
		for d := 1; d <= min(faults.ReorderWindow, len(r.queue)-1); d++ {
			r.offer(faults.Fault{Kind: faults.Reorder, At: at, Index: d})
		}
		idx := min(r.cfg.Plan.ReorderAt(at), len(r.queue)-1)
		msg = r.queue[idx]
		r.queue = slices.Delete(r.queue, idx, idx+1)
		r.inflight[attempt] = msg
		if idx > 0 {
			ev.Detail, ev.Fault = fmt.Sprintf("reordered: taken %d behind the head of the queue", idx), string(faults.Reorder)
		}
	}
	ev.Message = &msg
	r.record(ev)
	r.scheduleLate(at, msg)
	e := &env{r: r, proc: p, kind: faults.Consumer, at: at, attempt: attempt, msg: msg, pos: pos}
	r.offer(faults.Fault{Kind: faults.Redelivery, At: at, Variant: faults.Duplicate})
	if r.cfg.Format12 {
		r.offer(faults.Fault{Kind: faults.Redelivery, At: at, Variant: faults.LeaseExpired})
	}
	e.leaseAt = -1
	switch r.cfg.Plan.Redelivery(at) {
	case faults.Duplicate:
		if r.log != nil {
			r.logRewind(e)
			break
		}
		r.queue = append(r.queue, msg)
		r.record(histories.Event{Kind: histories.Requeue, Process: "broker", Attempt: attempt,
			Detail: "broker duplicate: a second copy of " + msg.ID + " is queued", Fault: string(faults.Redelivery)})
	case faults.LeaseExpired:
		if !r.cfg.Format12 {
			e.leaseAt, _ = r.cfg.Plan.LeaseExpiry(at)
			break
		}
		e.leaseExpired = true
		delete(r.inflight, attempt)
		r.queue = append([]model.Message{msg}, r.queue...)
		r.record(histories.Event{Kind: histories.Requeue, Process: "broker", Attempt: attempt,
			Detail: "lease expires while the handler works: " + msg.ID + " is queued again", Fault: string(faults.Redelivery)})
	}
	r.spawn(p, e, func(t *task) error {
		r.harness(func() { e.boundary(faults.BeforeHandle, 0) })
		return p.handler.Handle(r.handed(e), msg)
	})
}

func (r *runner) dispatch(p *process) {
	at := r.passes
	r.passes++
	r.due = false
	e := &env{r: r, proc: p, kind: faults.Dispatcher, at: at, pass: at + 1, passStart: r.finished}
	r.record(histories.Event{Kind: histories.Dispatch, Process: p.name, Pass: at + 1})
	r.spawn(p, e, func(t *task) error {
		busy, err := p.dispatcher.Pass(r.handed(e))
		t.busy = busy
		return err
	})
}

// spawn hands a task to a worker goroutine, which starts it at once (the
// scheduler then waits for it to park). Workers are reused from task to task (a goroutine's stack
// stays grown); a task that crashes ends its worker with runtime.Goexit.
func (r *runner) spawn(p *process, e *env, fn func(*task) error) {
	t := &task{env: e, resume: make(chan struct{}), parked: make(chan struct{})}
	e.task = t
	p.task = t
	var w *worker
	if n := len(r.workers); n > 0 {
		w, r.workers = r.workers[n-1], r.workers[:n-1]
	} else {
		w = &worker{jobs: make(chan job)}
		r.wg.Add(1)
		r.goLabelled(func() { r.work(w) })
	}
	w.jobs <- job{t, fn}
}

type job struct {
	t  *task
	fn func(*task) error
}

type worker struct{ jobs chan job }

func (r *runner) work(w *worker) {
	defer r.wg.Done()
	for {
		var j job
		select {
		case j = <-w.jobs:
		case <-r.kill:
			return
		}
		r.runJob(w, j)
		if r.free {
			return // a free-running run's tasks end with their goroutines
		}
	}
}

// runJob runs one task. If the task crashes (runtime.Goexit), the deferred
// calls still tell the scheduler, and the worker ends with it.
func (r *runner) runJob(w *worker, j job) {
	t := j.t
	completed := false
	defer func() {
		if completed && !r.free {
			r.workers = append(r.workers, w) // before the scheduler runs again
		}
		t.done = true
		if r.free {
			select {
			case r.ended <- t:
			case <-r.kill:
			}
			return
		}
		select {
		case t.parked <- struct{}{}:
		case <-r.kill:
		}
	}()
	defer func() {
		if x := recover(); x != nil {
			t.panicked, completed = x, true
		}
	}()
	t.err = j.fn(t)
	t.returned, completed = true, true
}

// finish handles the end of a task: a panic is an infrastructure failure; a
// crash was recorded by the task; a return ends the attempt (nacking a
// delivery the handler neither acked nor nacked) or the pass.
func (r *runner) finish(p *process, t *task) error {
	e := t.env
	if t.panicked != nil {
		return fmt.Errorf("%s panicked in %s: %v", r.cfg.Strategy.Name, e.where(), t.panicked)
	}
	if p.kind == faults.Dispatcher {
		r.due = t.busy || !t.returned || r.finished != e.passStart
	} else {
		r.due = r.cfg.Strategy.NewDispatcher != nil
		r.finished++
	}
	if !t.returned {
		return nil // crashed: recorded by env.crash
	}
	e.finishTxs()
	if e.attempt != 0 {
		if !e.acked && !e.nacked {
			reason := "handler returned without ack"
			if t.err != nil {
				reason = t.err.Error()
			}
			e.nack(reason)
		}
		r.record(histories.Event{Kind: histories.Done, Process: p.name, Attempt: e.attempt, Detail: errText(t.err)})
		return nil
	}
	if t.err != nil {
		r.record(histories.Event{Kind: histories.Done, Process: p.name, Pass: e.pass, Detail: errText(t.err)})
	}
	return nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (r *runner) observe() error {
	p := r.procs[0]
	r.start(p)
	for _, agg := range r.cfg.Workload.Aggregates() {
		tx, err := r.store.Begin(adapters.TxOptions{})
		if err != nil {
			return fmt.Errorf("observe %s: %w", agg, err)
		}
		st, err := p.handler.Observe(tx, r.cfg.Model, agg)
		_ = tx.Rollback()
		if err != nil {
			return fmt.Errorf("observe %s: %w", agg, err)
		}
		r.record(histories.Event{Kind: histories.Observe, Process: "observer", Aggregate: agg, State: st})
	}
	return nil
}
