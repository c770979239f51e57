package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"pgregory.net/rapid"

	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// Runner runs cases of one service: it holds the broker between runs.
// Its runs must not overlap (each resets the broker's streams); runners
// of their own, each with an embedded broker, may run at once.
type Runner struct {
	cfg Config
	b   broker
	gen *rapid.Generator[Case]
	db  *pgxpool.Pool // oncecheck's own connections: schemas, observations
	bg  sync.WaitGroup

	mu      sync.Mutex
	timings Timings
	next    chan schemaResult // the schema being prepared for the next run
}

// Timings say where the time of a runner's runs went, summed over them.
type Timings struct {
	Runs int
	// Schema is the wait for the run's schema (made while the run before
	// executed, so mostly none); Setup, the streams and the sends; Start,
	// from starting the processes to the first delivery; Work, from there
	// to the last thing recorded before the drain; Drain, from there
	// until the drain was seen (the settle or quiet period and the
	// polls); Teardown, killing the processes, reading the state and
	// dropping the schema; Check, the check of the history.
	Schema, Setup, Start, Work, Drain, Teardown, Check time.Duration
}

// Total is the summed time of the runs.
func (t Timings) Total() time.Duration {
	return t.Schema + t.Setup + t.Start + t.Work + t.Drain + t.Teardown + t.Check
}

// Timings returns where the time of the runs so far went.
func (r *Runner) Timings() Timings {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.timings
}

// New checks the configuration and starts (or connects to) the broker.
// Close releases it.
func New(cfg Config) (*Runner, error) {
	if !supported {
		return nil, ErrUnsupported
	}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, configErr(fmt.Errorf("service: the PostgreSQL DSN: %w", err))
	}
	pc.MaxConns = 4
	db, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("service: PostgreSQL: %w", err)
	}
	b, err := openBroker(cfg)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Runner{cfg: cfg, b: b, gen: cfg.generator(), db: db}, nil
}

// Close stops the embedded broker, or disconnects from an external one,
// and drops the schema prepared for a next run.
func (r *Runner) Close() error {
	r.mu.Lock()
	next := r.next
	r.next = nil
	r.mu.Unlock()
	if next != nil {
		if res := <-next; res.err == nil {
			r.dropSchema(res.name)
		}
	}
	r.bg.Wait()
	r.db.Close()
	r.b.close()
	return nil
}

// Config returns the configuration, with its defaults filled in.
func (r *Runner) Config() Config { return r.cfg }

// Generate returns the case of a seed: the same seed, the same case.
func (r *Runner) Generate(seed uint64) Case { return r.gen.Example(int(seed)) }

// Run runs one case on the service and checks its history. The error is
// about the harness (the database, the broker, the command), never a
// verdict.
func (r *Runner) Run(ctx context.Context, c Case, seed uint64) (*histories.History, checkers.Result, error) {
	rn := &run{r: r, ctx: ctx, c: c, sent: map[string]model.Message{}, byToken: map[string]*attempt{}, reached: map[string]bool{}}
	t0 := time.Now()
	h, err := rn.execute()
	if err != nil {
		return nil, checkers.Result{}, err
	}
	t1 := time.Now()
	res, err := checkers.Check(h, r.cfg.Model, checkers.Options{})
	r.mu.Lock()
	r.timings.Runs++
	r.timings.Schema += rn.schemaTaken.Sub(t0)
	r.timings.Setup += rn.started.Sub(rn.schemaTaken)
	workFrom := rn.started
	if !rn.first.IsZero() {
		r.timings.Start += rn.first.Sub(rn.started)
		workFrom = rn.first
	}
	quietFrom := rn.quietFrom
	if quietFrom.Before(workFrom) {
		quietFrom = workFrom
	}
	if quietFrom.After(rn.drained) {
		quietFrom = rn.drained
	}
	r.timings.Work += quietFrom.Sub(workFrom)
	r.timings.Drain += rn.drained.Sub(quietFrom)
	r.timings.Teardown += t1.Sub(rn.drained)
	r.timings.Check += time.Since(t1)
	r.mu.Unlock()
	if err != nil {
		return h, res, fmt.Errorf("service: check the run's history: %w", err)
	}
	h.Header.Verdict, h.Header.Anomalies = res.Verdict, res.Anomalies
	if err := Explain(h, &res); err != nil {
		return h, res, err
	}
	return h, res, nil
}

// run is the state of one run, shared by the proxies' goroutines under mu.
type run struct {
	r      *Runner
	ctx    context.Context
	c      Case
	schema string
	dsn    string // the run's DATABASE_URL

	mu       sync.Mutex
	events   []histories.Event
	sent     map[string]model.Message // by id
	attempts []*attempt
	byToken  map[string]*attempt // by the delivery's token (what its ack names)
	reached  map[string]bool     // the ids of the sent copies delivered at least once
	procs    []*proc
	proxies  []brokerProxy
	pgs      []*pgProxy
	gate     *gate     // a replay's order to follow (order.go), or nil
	txs      int       // transactions numbered so far
	last     time.Time // the last thing that happened
	busy     int       // pauses and restarts under way: not drained
	stopping bool
	lates    int // late re-issues sent so far (late.go)
	// lateWaiting counts late copies not sent yet (part of busy).
	lateWaiting int
	failed      error // a harness error of the run's own goroutines (a late send)
	wg          sync.WaitGroup

	// brokerBack: when the broker, restarted in this run, ran again and
	// its clients had to connect again (zero: no restart).
	brokerBack time.Time

	// schema taken, processes started, first delivery, the last thing
	// recorded before the drain, drain seen
	schemaTaken, started, first, quietFrom, drained time.Time
}

// proc is one consumer process, across its restarts.
type proc struct {
	index  int
	gen    int // incremented by every start
	cmd    *exec.Cmd
	done   chan struct{}
	dead   bool // killed by a fault, or exited; waiting for its restart
	exits  int  // exits of its own
	open   []*attempt
	latest *attempt // the last delivery it got, acked or not
	env    []string // how it reaches the broker through its proxy
	dbURL  string
	// wakeUntil: resumed from a pause, its silence does not count towards
	// the drain until it does something or this passes.
	wakeUntil time.Time
}

func (p *proc) name() string { return "consumer-" + strconv.Itoa(p.index+1) }

// attempt is one delivery of an input copy to a process.
type attempt struct {
	n         int
	proc      *proc
	msg       model.Message
	token     string // what its ack names
	publishes int
	writes    int
	commits   int
	stmts     int // statements the server completed for it
	sent      int // statements its process sent (reads included)
	acked     bool
	faults    []faults.Fault
}

func (rn *run) add(ev histories.Event) {
	ev.Step = len(rn.events) + 1
	rn.events = append(rn.events, ev)
	rn.last = time.Now()
	for _, p := range rn.procs {
		if !p.wakeUntil.IsZero() && ev.Process == p.name() {
			p.wakeUntil = time.Time{}
		}
	}
}

func (rn *run) execute() (*histories.History, error) {
	cfg := rn.r.cfg
	schema, err := rn.r.takeSchema(rn.ctx)
	if err != nil {
		return nil, err
	}
	rn.schema, rn.schemaTaken = schema, time.Now()
	defer rn.r.dropSchema(schema)
	if rn.dsn, err = withSearchPath(cfg.DSN, schema); err != nil {
		return nil, err
	}
	if s, ok := rn.r.b.(schemaUser); ok {
		s.useSchema(schema)
	}
	if err := rn.r.b.reset(rn.ctx); err != nil {
		return nil, err
	}
	if err := rn.send(); err != nil {
		return nil, err
	}
	pgNet, pgAddr, err := pgUpstream(cfg.DSN)
	if err != nil {
		return nil, err
	}
	rn.mu.Lock()
	rn.started = time.Now()
	for i := range cfg.Consumers {
		p := &proc{index: i}
		rn.procs = append(rn.procs, p)
		px, err := rn.r.b.proxy(i, func() int { rn.mu.Lock(); defer rn.mu.Unlock(); return p.gen }, rn)
		if err != nil {
			rn.mu.Unlock()
			rn.stop()
			return nil, err
		}
		rn.proxies = append(rn.proxies, px)
		p.env = px.env()
		pp, err := newPGProxy(pgNet, pgAddr, i, func() int { rn.mu.Lock(); defer rn.mu.Unlock(); return p.gen }, rn)
		if err != nil {
			rn.mu.Unlock()
			rn.stop()
			return nil, err
		}
		rn.pgs = append(rn.pgs, pp)
		if p.dbURL, err = throughProxy(rn.dsn, pp.addr()); err != nil {
			rn.mu.Unlock()
			rn.stop()
			return nil, err
		}
		if err := rn.start(p); err != nil {
			rn.mu.Unlock()
			rn.stop()
			return nil, err
		}
	}
	rn.last = time.Now()
	rn.mu.Unlock()
	drained, detail, err := rn.drain()
	rn.drained = time.Now()
	rn.mu.Lock()
	rn.quietFrom = rn.last
	rn.mu.Unlock()
	rn.stop()
	if err != nil {
		return nil, err
	}
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if rn.failed != nil {
		return nil, rn.failed
	}
	if drained {
		rn.add(histories.Event{Kind: histories.Drain, Process: "broker", Detail: detail})
	} else {
		rn.add(histories.Event{Kind: histories.Undrained, Detail: detail})
	}
	if err := rn.observe(); err != nil {
		return nil, err
	}
	h := &histories.History{Header: rn.header(), Events: rn.events}
	if err := h.Validate(); err != nil {
		return h, fmt.Errorf("service: the recorded history is malformed: %w", err)
	}
	return h, nil
}

func (rn *run) header() histories.Header {
	cfg := rn.r.cfg
	return histories.Header{
		Format: histories.Format, Version: histories.Version, Tool: "service mode on " + cfg.Broker,
		Model: cfg.Model.Name(), Strategy: "service", Backend: "pg", Downstream: "dedup-by-id",
		Faults: cfg.Faults, Workload: rn.c.Workload, Plan: rn.c.Plan, FreeRunning: true,
	}
}

// schemaResult is a schema prepared for a run, or why it could not be.
type schemaResult struct {
	name string
	err  error
}

// takeSchema returns the schema of a run: the one prepared while the
// previous run executed, if any, else a new one; and starts preparing the
// next. A prepared schema is made exactly as one made at the run's start
// (CREATE SCHEMA, then the schema file): only when it is made changes.
func (r *Runner) takeSchema(ctx context.Context) (string, error) {
	r.mu.Lock()
	ch := r.next
	next := make(chan schemaResult, 1)
	r.next = next
	r.mu.Unlock()
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		name, err := r.createSchema(ctx)
		next <- schemaResult{name, err}
	}()
	if ch != nil {
		if res := <-ch; res.err == nil {
			return res.name, nil
		}
	}
	return r.createSchema(ctx)
}

// createSchema makes a schema for a run and applies the service's tables.
func (r *Runner) createSchema(ctx context.Context) (string, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "oncecheck_svc_" + hex.EncodeToString(b[:])
	conn, err := r.db.Acquire(ctx)
	if err != nil {
		return "", fmt.Errorf("service: connect to PostgreSQL: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		return "", fmt.Errorf("service: create schema %s: %w", name, err)
	}
	if r.cfg.Schema == "" {
		return name, nil
	}
	if _, err := conn.Exec(ctx, "SET search_path TO "+name); err != nil {
		r.dropSchema(name)
		return "", fmt.Errorf("service: schema %s: %w", name, err)
	}
	if _, err := conn.Exec(ctx, r.cfg.Schema); err != nil {
		r.dropSchema(name)
		return "", fmt.Errorf("service: apply the schema file to %s: %w", name, err)
	}
	return name, nil
}

// dropSchema drops a run's schema, in the background: Close waits for it.
func (r *Runner) dropSchema(name string) {
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = r.db.Exec(ctx, "DROP SCHEMA IF EXISTS "+name+" CASCADE")
	}()
}

// withSearchPath adds the run's schema to a DSN, as a startup option any
// PostgreSQL client passes on (libpq, pgx, JDBC's options, psycopg).
func withSearchPath(dsn, schema string) (string, error) {
	opt := "-csearch_path=" + schema
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("service: the PostgreSQL URL: %w", err)
		}
		q := u.Query()
		q.Set("options", opt)
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	return dsn + " options=" + opt, nil
}

// pgUpstream is where the PostgreSQL proxies connect: the server of the
// DSN, over TCP or its Unix socket.
func pgUpstream(dsn string) (network, addr string, err error) {
	c, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "", "", fmt.Errorf("service: the PostgreSQL DSN: %w", err)
	}
	if strings.HasPrefix(c.Host, "/") {
		return "unix", fmt.Sprintf("%s/.s.PGSQL.%d", c.Host, c.Port), nil
	}
	return "tcp", net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))), nil
}

// throughProxy points a DSN at the proxy's address.
func throughProxy(dsn, addr string) (string, error) {
	host, port, _ := net.SplitHostPort(addr)
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("service: the PostgreSQL URL: %w", err)
		}
		u.Host = addr
		q := u.Query()
		q.Del("host")
		q.Del("port")
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	return dsn + " host=" + host + " port=" + port, nil
}

// send publishes the workload in the plan's order: reordered copies move
// later, re-issued ones come again with a new id.
func (rn *run) send() error {
	w := rn.c.Workload
	type item struct {
		m     model.Message
		fault string
	}
	order := make([]item, len(w))
	for i, m := range w {
		order[i] = item{m: m}
	}
	reissues := 0
	for _, f := range rn.c.Plan.Faults {
		switch f.Kind {
		case faults.Reorder:
			if f.At >= len(order) {
				continue
			}
			it := order[f.At]
			it.fault = string(faults.Reorder)
			order = slices.Delete(order, f.At, f.At+1)
			to := min(f.At+f.Index, len(order))
			order = slices.Insert(order, to, it)
		case faults.Reissue:
			if f.Index >= len(w) {
				continue
			}
			reissues++
			m := w[f.Index]
			m.ID = fmt.Sprintf("%s-r%d", m.ID, reissues)
			order = slices.Insert(order, min(f.At, len(order)), item{m: m, fault: string(faults.Reissue)})
		}
	}
	ordered := rn.r.cfg.Model.Ordered()
	for _, it := range order {
		m := it.m
		rn.mu.Lock()
		rn.sent[m.ID] = m
		rn.add(histories.Event{Kind: histories.Send, Process: "sender", Message: &m, Fault: it.fault})
		rn.mu.Unlock()
		if err := rn.r.b.send(rn.ctx, m, ordered); err != nil {
			return fmt.Errorf("service: %w", err)
		}
	}
	return nil
}

// start starts (or restarts) a process; rn.mu is held.
func (rn *run) start(p *proc) error {
	cfg := rn.r.cfg
	env := append(os.Environ(), "DATABASE_URL="+p.dbURL, "ONCECHECK_CONSUMER="+strconv.Itoa(p.index))
	cmd := command(cfg.Command, append(env, p.env...))
	cmd.Dir = cfg.Dir
	cmd.Stdout, cmd.Stderr = cfg.Output, cfg.Output
	setGroup(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("service: start %q: %w", cfg.Command, err)
	}
	p.gen++
	p.cmd, p.dead, p.done = cmd, false, make(chan struct{})
	done, gen := p.done, p.gen
	rn.wg.Add(1)
	go func() {
		defer rn.wg.Done()
		err := cmd.Wait()
		close(done)
		rn.exited(p, gen, err)
	}()
	if gen > 1 {
		rn.add(histories.Event{Kind: histories.Restart, Process: p.name(), Detail: fmt.Sprintf("started again (pid %d)", cmd.Process.Pid)})
	}
	return nil
}

// exited handles a process that ended by itself: it is restarted, up to a
// few times.
func (rn *run) exited(p *proc, gen int, err error) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if rn.stopping || p.gen != gen || p.dead {
		return
	}
	p.dead = true
	p.exits++
	for _, a := range p.open {
		rn.add(histories.Event{Kind: histories.Crash, Attempt: a.n, Process: p.name(), Point: "exit", Detail: fmt.Sprintf("the process exited by itself: %v", err)})
	}
	p.open, p.latest = nil, nil
	if p.exits > 3 {
		rn.add(histories.Event{Kind: histories.Restart, Process: p.name(), Detail: fmt.Sprintf("exited by itself %d times (%v): not restarted", p.exits, err)})
		return
	}
	if err := rn.start(p); err != nil {
		rn.add(histories.Event{Kind: histories.Restart, Process: p.name(), Detail: err.Error()})
	}
}

// kill SIGKILLs a process at a fault; rn.mu is held. Its open attempts
// crash; once it is gone oncecheck negatively acknowledges their copies
// on its behalf (as the broker would after the ack wait) and restarts it.
func (rn *run) kill(p *proc, target *attempt, f faults.Fault) {
	if p.dead {
		return
	}
	p.dead = true
	var tokens []string
	for _, a := range p.open {
		detail := "SIGKILL: " + Describe(f)
		if a != target {
			detail = "SIGKILL of its process: " + Describe(f)
		}
		rn.add(histories.Event{Kind: histories.Crash, Attempt: a.n, Process: p.name(), Point: string(f.Point), Fault: string(f.Kind), Detail: detail})
		tokens = append(tokens, a.token)
	}
	if target != nil && !slices.Contains(p.open, target) {
		// The fault's attempt ended already (a crash after its ack, or
		// after a publish or commit of an attempt that acked first): the
		// crash is recorded without an attempt, which ended once, and
		// names its message, so that an explanation finds it.
		m := target.msg
		dm := model.Message{ID: m.ID, Key: m.Key, Aggregate: m.Aggregate, Type: m.Type}
		rn.add(histories.Event{Kind: histories.Crash, Process: p.name(), Message: &dm, Point: string(f.Point), Fault: string(f.Kind),
			Detail: fmt.Sprintf("%s%d ended: %s", crashAfterEnd, target.n, Describe(f))})
	}
	p.open, p.latest = nil, nil
	_ = signalGroup(p.cmd, sigKill)
	rn.busy++
	done := p.done
	rn.wg.Add(1)
	go func() {
		defer rn.wg.Done()
		<-done
		var given int
		var err error
		if len(tokens) > 0 {
			given, err = requeueCount(rn.r.b, tokens)
		}
		rn.mu.Lock()
		defer rn.mu.Unlock()
		rn.busy--
		if err != nil && rn.failed == nil {
			rn.failed = fmt.Errorf("service: give the copies of the killed %s back: %w", p.name(), err)
		}
		if given > 0 {
			rn.add(histories.Event{Kind: histories.Requeue, Process: "broker", Detail: givenBack(given, len(tokens), p.name())})
		}
		if !rn.stopping {
			if err := rn.start(p); err != nil {
				rn.add(histories.Event{Kind: histories.Restart, Process: p.name(), Detail: err.Error()})
			}
		}
	}()
}

// pause stops a process for longer than the consumer's ack wait, then lets
// it go on; it does not hold rn.mu.
func (rn *run) pause(p *proc, a *attempt, f faults.Fault) {
	rn.mu.Lock()
	if p.dead {
		rn.busy--
		rn.mu.Unlock()
		return
	}
	cmd := p.cmd
	_ = signalGroup(cmd, sigStop) // first: the ack wait is asked for while it stands still
	rn.mu.Unlock()
	in, err := rn.r.b.inputs(rn.ctx)
	wait := in.ackWait
	if err != nil || wait <= 0 {
		wait = 30 * time.Second // JetStream's default ack wait
	}
	wait += 500 * time.Millisecond
	rn.mu.Lock()
	detail := fmt.Sprintf("SIGSTOP %s at attempt %d for %s, past its ack wait: %s", p.name(), a.n, wait, Describe(f))
	if f.Variant == faults.LeaseExpired && f.Index == 0 {
		// Where the signal landed among the attempt's statements, which
		// the proxy does not hold: a replay re-applies the pause there
		// (Replan).
		detail += fmt.Sprintf("; %s%d", pauseSent, a.sent)
	}
	rn.add(histories.Event{Kind: histories.Requeue, Attempt: a.n, Process: p.name(), Fault: string(f.Kind), Detail: detail})
	rn.mu.Unlock()
	until := time.Now().Add(wait)
	for time.Now().Before(until) && !rn.takenOver(a) {
		if sleepCtx(rn.ctx, drainPoll) != nil {
			break
		}
	}
	rn.mu.Lock()
	defer rn.mu.Unlock()
	rn.busy--
	if p.cmd == cmd && !p.dead {
		_ = signalGroup(cmd, sigCont)
		rn.add(histories.Event{Kind: histories.Restart, Process: p.name(), Fault: string(f.Kind), Detail: "SIGCONT: the paused process goes on"})
		// A resumed process gets a moment before its silence counts
		// towards the drain: it has just woken up.
		p.wakeUntil = time.Now().Add(resumeGrace)
	}
}

// takenOver reports whether the broker redelivered the copy of attempt a
// (paused past its ack wait) and a later attempt acknowledged it: the
// pause has done what it is for, the zombie may wake.
func (rn *run) takenOver(a *attempt) bool {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	return rn.ackedElsewhere(a)
}

// ackedElsewhere reports whether a later attempt than a acknowledged a's
// message; rn.mu is held.
func (rn *run) ackedElsewhere(a *attempt) bool {
	for _, b := range rn.attempts[a.n:] {
		if b.msg.ID == a.msg.ID && b.acked {
			return true
		}
	}
	return false
}

// resumeGrace bounds how long after SIGCONT a resumed process's silence
// does not yet count towards the drain: until it does something the
// proxies see, or this passes.
const resumeGrace = time.Second

// undeliveredQuiet is the quiet period of a run with a copy sent but
// never delivered: the broker's word that nothing is pending is not
// enough then (a consumer being created counts nothing yet).
const undeliveredQuiet = time.Second

// drainPoll is how often the drain asks the broker how far its consumers
// are and the proxies whether anything is in flight.
const drainPoll = 10 * time.Millisecond

// drain waits until the run is quiescent (see quiescent) or the bound
// passes (the run is stuck).
func (rn *run) drain() (bool, string, error) {
	cfg := rn.r.cfg
	deadline := time.Now().Add(cfg.Bound)
	var in inputs
	var w idleWatch
	for time.Now().Before(deadline) {
		if err := sleepCtx(rn.ctx, drainPoll); err != nil {
			return false, "", err
		}
		var err error
		if in, err = rn.r.b.inputs(rn.ctx); err != nil {
			return false, "", err
		}
		if in.consumers == 0 || in.pending > 0 || in.ackPending > 0 {
			w.reset()
			continue
		}
		if ok, how := rn.quiescent(&w); ok {
			return true, "every input acknowledged, no statement, transaction or publish in flight, " + how, nil
		}
	}
	if in.consumers == 0 {
		return false, fmt.Sprintf("no consumer of %s after %s", rn.r.b.input(), cfg.Bound), nil
	}
	if in.stuck != "" {
		return false, fmt.Sprintf("after %s: %s", cfg.Bound, in.stuck), nil
	}
	msg := fmt.Sprintf("after %s: %d copies not yet delivered, %d not acknowledged", cfg.Bound, in.pending, in.ackPending)
	if h := rn.holding(); h != "" {
		msg += "; " + h
	}
	return false, msg, nil
}

// holding says what, beside the broker, kept the run from draining: late
// copies not sent yet, pauses or restarts under way, a publish or SQL in
// flight at a process's proxy.
func (rn *run) holding() string {
	rn.mu.Lock()
	var what []string
	if rn.lateWaiting > 0 {
		what = append(what, fmt.Sprintf("%d late copies not sent yet (their original's attempt never ended)", rn.lateWaiting))
	}
	if n := rn.busy - rn.lateWaiting; n > 0 {
		what = append(what, fmt.Sprintf("%d pauses or broker restarts under way", n))
	}
	proxies, pgs, procs := slices.Clone(rn.proxies), slices.Clone(rn.pgs), slices.Clone(rn.procs)
	rn.mu.Unlock()
	for i, px := range proxies {
		if px != nil && !px.idle() && i < len(procs) {
			what = append(what, "a publish of "+procs[i].name()+" waits for its confirmation")
		}
	}
	for i, pp := range pgs {
		if pp != nil && !pp.idle() && i < len(procs) {
			what = append(what, "a SQL statement, transaction or connection of "+procs[i].name()+" is in flight")
		}
	}
	return strings.Join(what, "; ")
}

// reconnectGrace bounds how long after a broker restart the drain waits
// for every process to be connected to its broker proxy again (nats.go
// tries again after 2s by default); a process still not connected then
// is left to the quiet period.
const reconnectGrace = 5 * time.Second

// quiescent reports whether, the broker having nothing pending, nothing
// can still happen in the run but what a process starts by itself: no
// pause or restart is under way, no resumed process is still waking up
// (nor, for a while after a broker restart, one not connected again),
// no connection of any process has a SQL statement in flight or a
// transaction open, no publish waits for its confirmation, and either
// nothing was recorded for the quiet period, or, sooner, every process
// has stood idle for the settle period as the kernel shows it (w) with
// nothing recorded meanwhile. It says which, for the drain event.
func (rn *run) quiescent(w *idleWatch) (bool, string) {
	cfg := rn.r.cfg
	rn.mu.Lock()
	last, busy := rn.last, rn.busy
	now := time.Now()
	quiet := cfg.Quiet
	// A copy was never delivered: a consumer just created may not count
	// it as pending yet; only a long silence says it never will be.
	undelivered := len(rn.reached) < len(rn.sent)
	if undelivered {
		quiet = max(quiet, undeliveredQuiet)
	}
	waking := false
	var pids []int
	var brokerPorts [][]int // of each process of pids, just after a broker restart
	reconnecting := !rn.brokerBack.IsZero() && now.Sub(rn.brokerBack) < reconnectGrace
	for _, p := range rn.procs {
		waking = waking || now.Before(p.wakeUntil)
		if p.cmd != nil && !p.dead {
			pids = append(pids, p.cmd.Process.Pid)
			if reconnecting {
				brokerPorts = append(brokerPorts, envPorts(p.env))
			}
		}
	}
	proxies, pgs := slices.Clone(rn.proxies), slices.Clone(rn.pgs)
	rn.mu.Unlock()
	if busy > 0 || waking {
		w.reset()
		return false, ""
	}
	idle := w.observe(now, pids)
	settled := !undelivered && cfg.Settle > 0 && idle >= cfg.Settle && now.Sub(last) >= cfg.Settle
	if !settled && now.Sub(last) < quiet {
		return false, ""
	}
	for _, px := range proxies {
		if !px.idle() {
			return false, ""
		}
	}
	for _, pp := range pgs {
		if !pp.idle() {
			return false, ""
		}
	}
	if settled && (unread(pids) != "" || timerPending(pids, max(quiet, timerHorizon)) != "") {
		settled = false
		if now.Sub(last) < quiet {
			return false, ""
		}
	}
	if !reconnected(pids, brokerPorts) {
		return false, ""
	}
	how := fmt.Sprintf("nothing for %s", quiet)
	if settled {
		how = fmt.Sprintf("nothing for %s, every process idle for %s (no CPU used, no thread running, nothing unread in a socket, no timer due within %s)", now.Sub(last).Round(time.Millisecond), idle.Round(time.Millisecond), max(quiet, timerHorizon))
	}
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if !rn.last.Equal(last) || rn.busy != 0 {
		return false, ""
	}
	return true, how
}

// unread says where data waits unread in a socket of a process of pids
// or of oncecheck: something sent that its reader has not taken in yet.
func unread(pids []int) string {
	for _, pid := range pids {
		if u := unreadBy(pid); u != "" {
			return u
		}
	}
	return unreadHere()
}

// timerHorizon is how far ahead a process's timer counts as due (at
// least the quiet period): a process whose thread waits for one that may
// fire that soon is not settled.
const timerHorizon = time.Second

// timerPending says which process of pids waits for a timer due within
// horizon (timerDue): an idle process that will work again by itself.
func timerPending(pids []int, horizon time.Duration) string {
	for _, pid := range pids {
		if d := timerDue(pid, horizon); d != "" {
			return d
		}
	}
	return ""
}

// reconnected reports whether, after a broker restart, each process of
// pids holds a connection to one of its broker proxy's ports again
// (brokerPorts, from its environment; nil when there was no restart): a
// process waiting out its client's reconnection delay is idle, but not
// done. A process whose ports are not known counts as connected.
func reconnected(pids []int, brokerPorts [][]int) bool {
	for i, ports := range brokerPorts {
		if len(ports) == 0 {
			continue
		}
		peers := peerPorts(pids[i])
		if peers == nil {
			continue // its sockets cannot be looked at
		}
		if !slices.ContainsFunc(ports, func(p int) bool { return peers[p] }) {
			return false
		}
	}
	return true
}

// envPorts are the ports of the addresses in a process's broker
// environment (NATS_URL=nats://127.0.0.1:PORT, KAFKA_BROKERS=HOST:PORT).
func envPorts(env []string) []int {
	var ports []int
	for _, kv := range env {
		_, v, _ := strings.Cut(kv, "=")
		for _, a := range strings.Split(v, ",") {
			if u, err := url.Parse(a); err == nil && u.Host != "" {
				a = u.Host
			}
			if _, port, err := net.SplitHostPort(a); err == nil {
				if n, err := strconv.Atoi(port); err == nil {
					ports = append(ports, n)
				}
			}
		}
	}
	return ports
}

// idleWatch follows the processes' activity over the drain's polls, as
// the kernel shows it: since when none of them has used CPU time or had
// a thread running or waiting to run.
type idleWatch struct {
	pids  []int
	last  []activity
	at    time.Time // when last was read
	since time.Time // the processes idle since; zero: not idle
}

// reset forgets what was seen: the run is not quiet.
func (w *idleWatch) reset() { *w = idleWatch{} }

// observe reads the activity of the processes pids and returns how long
// they have stood idle: 0 when one of them used CPU time since the last
// poll, has a thread running now, or cannot be read.
func (w *idleWatch) observe(now time.Time, pids []int) time.Duration {
	if !activityReadable || len(pids) == 0 {
		return 0
	}
	acts := make([]activity, len(pids))
	for i, pid := range pids {
		a, ok := readActivity(pid)
		if !ok || a.running != "" {
			w.reset()
			return 0
		}
		acts[i] = a
	}
	if slices.Equal(pids, w.pids) && slices.Equal(acts, w.last) {
		if w.since.IsZero() {
			w.since = w.at
		}
	} else {
		w.since = time.Time{}
	}
	w.pids, w.last, w.at = pids, acts, now
	if w.since.IsZero() {
		return 0
	}
	return now.Sub(w.since)
}

// stop ends every process and proxy. The run is over (drained or
// stuck), so the processes are killed (SIGKILL) rather than asked to end.
func (rn *run) stop() {
	rn.mu.Lock()
	rn.stopping = true
	procs := slices.Clone(rn.procs)
	for _, p := range procs {
		if p.cmd != nil {
			_ = signalGroup(p.cmd, sigKill)
			_ = signalGroup(p.cmd, sigCont)
		}
	}
	rn.mu.Unlock()
	for _, p := range procs {
		if p.cmd != nil {
			<-p.done
		}
	}
	for _, px := range rn.proxies {
		px.close()
	}
	for _, pp := range rn.pgs {
		pp.close()
	}
	rn.wg.Wait()
}

// observe reads each aggregate's final state with the observation query
// or function; rn.mu is held.
func (rn *run) observe() error {
	ctx, cancel := context.WithTimeout(rn.ctx, 30*time.Second)
	defer cancel()
	conn, err := rn.r.db.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("service: connect to observe: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET search_path TO "+rn.schema); err != nil {
		return fmt.Errorf("service: observe schema %s: %w", rn.schema, err)
	}
	var states map[string]model.State
	if f := rn.r.cfg.Observe; f != nil {
		states, err = observeByFunction(ctx, conn.Conn(), f)
	} else {
		states, err = observeBySQL(ctx, conn.Conn(), rn.r.cfg.ObserveSQL)
	}
	if err != nil {
		return err
	}
	m := rn.r.cfg.Model
	for _, agg := range rn.c.Workload.Aggregates() {
		if _, ok := states[agg]; !ok {
			states[agg] = m.Initial(agg)
		}
	}
	aggs := make([]string, 0, len(states))
	for a := range states {
		aggs = append(aggs, a)
	}
	slices.Sort(aggs)
	for _, a := range aggs {
		rn.add(histories.Event{Kind: histories.Observe, Aggregate: a, State: states[a]})
	}
	return nil
}

// observeBySQL reads the states with the observation query: rows of
// (aggregate, state as JSON).
func observeBySQL(ctx context.Context, conn *pgx.Conn, query string) (map[string]model.State, error) {
	rows, err := conn.Query(ctx, query, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, fmt.Errorf("service: the observation query: %w", err)
	}
	defer rows.Close()
	states := map[string]model.State{}
	for rows.Next() {
		var agg string
		var state []byte
		if err := rows.Scan(&agg, &state); err != nil {
			return nil, fmt.Errorf("service: the observation query must return (aggregate, state as JSON): %w", err)
		}
		s, err := model.Canonical(state)
		if err != nil {
			return nil, fmt.Errorf("service: the state of %s is not JSON: %w", agg, err)
		}
		states[agg] = s
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("service: the observation query: %w", err)
	}
	return states, nil
}

// observeByFunction reads the states with the configuration's function,
// and puts each in canonical form.
func observeByFunction(ctx context.Context, conn *pgx.Conn, f func(context.Context, *pgx.Conn) (map[string]model.State, error)) (map[string]model.State, error) {
	got, err := f(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("service: the observation function (Config.Observe): %w", err)
	}
	states := make(map[string]model.State, len(got))
	for agg, st := range got {
		if len(st) == 0 {
			return nil, fmt.Errorf("service: the observation function (Config.Observe) returned no state for %s: want JSON in the model's representation", agg)
		}
		s, err := model.Canonical(st)
		if err != nil {
			return nil, fmt.Errorf("service: the observation function (Config.Observe): the state of %s is not JSON: %w", agg, err)
		}
		states[agg] = s
	}
	return states, nil
}
