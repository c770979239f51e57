// Package service verifies a real consumer service, black box, in any
// language: it starts the service's command as processes, owns the NATS
// JetStream broker (embedded, or $ONCECHECK_NATS) and a PostgreSQL schema
// of each run, publishes a model's workload, injects faults at the
// boundaries its NATS and PostgreSQL proxies see (SIGKILL, SIGSTOP past
// the ack wait, a dropped ack, a refused publish, a database connection
// cut mid-transaction, re-issued, reordered and late sends) and restarts the
// embedded broker, records a history and
// checks it with checkers.Check as any other. docs/service-mode.md is the
// contract a service meets.
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"pgregory.net/rapid"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/model"
)

// Config is what a runner needs to know of the service and its runs.
type Config struct {
	// Command is the service's command line, run by sh -c (any
	// language); a line of plain words (NAME=value assignments, exec, a
	// program and its arguments, nothing a shell would expand) is started
	// directly, as sh would start it.
	Command string
	// Dir is the command's working directory ("" is the current one).
	Dir string
	// Consumers is how many processes of the command run; 0 means 2.
	Consumers int
	// Schema is the SQL applied to each run's fresh schema before the
	// service starts (several statements; "" applies nothing).
	Schema string
	// ObserveSQL returns each aggregate's state after the run drains: two
	// columns, the aggregate and its state as JSON in the model's
	// representation. An aggregate without a row is in its initial state.
	// Exactly one of ObserveSQL and Observe is set.
	ObserveSQL string
	// Observe, instead of ObserveSQL, reads each aggregate's state after
	// the run drains, in Go: db is a connection of oncecheck's own to the
	// run's database, its search_path set to the run's schema. It returns
	// each aggregate's state as JSON in the model's representation (as
	// model.Model.Apply writes it; the keys in any order); an aggregate it
	// leaves out is in its initial state. An error is a harness error: the
	// run fails with it, wrapped.
	Observe func(ctx context.Context, db *pgx.Conn) (map[string]model.State, error)
	// Model is the reference business logic; nil means model.Orders.
	Model model.Model
	// Faults are the kinds a plan draws from (see Kinds); none means a
	// run without faults.
	Faults []faults.Kind
	// MaxMessages and MaxFaults bound the generated cases; 0 means 4 and 2.
	MaxMessages, MaxFaults int
	// DSN is the PostgreSQL server; each run gets a schema of its own.
	DSN string
	// Broker is the broker the service consumes (Brokers lists them);
	// "" means "nats".
	Broker string
	// BrokerURL is an external server of the broker; "" starts one
	// embedded where the broker can be (NATS), else uses the broker's
	// default address. For NATS, each run deletes and re-creates the
	// streams ONCECHECK_IN and ONCECHECK_OUT there: a server of one's own.
	BrokerURL string
	// Quiet is how long nothing may be recorded, with no statement,
	// transaction or publish in flight, for a run to count as drained; 0
	// means 300ms. Bound is how long a run may take to drain before it
	// is stuck; 0 means 30s.
	Quiet, Bound time.Duration
	// Settle is how long, where the kernel shows what the processes do
	// (Linux), every process must have stood idle (no CPU used, no thread
	// running or waiting to run, nothing unread in its sockets or
	// oncecheck's) with nothing recorded, for a run to count as drained
	// before Quiet passes; 0 means 50ms, negative waits for Quiet alone.
	Settle time.Duration
	// Output receives the processes' standard output and error; nil
	// discards them.
	Output io.Writer
	// Queue is the contract of a service that consumes a PostgreSQL
	// table (Broker "postgres"); unused on the other brokers.
	Queue PGQueue
}

// Kinds are the fault kinds service mode injects in this version (on
// NATS; BrokerKinds says which on each broker). The last two are service mode's own (faults.ServiceKinds): a database
// connection cut mid-transaction, and a restart of the (embedded) broker.
var Kinds = []faults.Kind{faults.Crash, faults.Redelivery, faults.Reorder, faults.PublishFailure, faults.Reissue, faults.Concurrent,
	faults.Late, faults.CutConnection, faults.BrokerRestart}

// cutStatements bounds the statement of a transaction at which a
// generated cut-connection fault strikes.
const cutStatements = 4

// The points at which a crash (SIGKILL) strikes, as the proxies see them.
// At the NATS proxy: BeforeHandle drops the delivery and kills its
// process; the publish points strike at the attempt's publish number
// Index, before it reaches the broker or as the broker's confirmation
// comes back; BeforeAck drops the ack and kills; AfterAck forwards the
// ack and kills at once. At the PostgreSQL proxy, counting from the
// attempt's delivery: AfterWrite kills as the server's reply to write
// number Index comes back, BeforeCommit as commit number Index goes to the
// server (not forwarded), AfterCommit as the server's reply to commit
// number Index comes back (the server committed, the process never
// learns it). A write outside a transaction is a commit too.
const AfterAck faults.Point = "after-ack"

// CrashPoints are the points a generated crash picks from.
var CrashPoints = []faults.Point{faults.BeforeHandle, faults.AfterWrite, faults.BeforeCommit, faults.AfterCommit,
	faults.BeforePublish, faults.AfterPublish, faults.BeforeAck, AfterAck}

// indexed reports whether a crash point counts writes, commits or
// publishes of its attempt.
func indexed(p faults.Point) bool {
	switch p {
	case faults.AfterWrite, faults.BeforeCommit, faults.AfterCommit, faults.BeforePublish, faults.AfterPublish:
		return true
	}
	return false
}

// pauseAtStatement is the first Index of a lease-expired fault (a pause)
// that strikes at a SQL statement: Index 0 pauses the process as the
// delivery reaches it, 1 as its ack does, pauseAtStatement+k as the
// server's reply to the attempt's statement k (from 0) comes back.
const pauseAtStatement = 2

// Case is one run's input: the workload and the fault plan.
type Case struct {
	Workload model.Workload
	Plan     faults.Plan
	// Order, when not empty, is the order of a saved history's SQL
	// events that a replay follows (OrderOf): the PostgreSQL proxies hold
	// a BEGIN, write or COMMIT until the ones recorded before it are
	// done, for at most orderWait each. Such a replay runs the plan
	// Replan gives for the history.
	Order Order
}

// ErrUnsupported is returned off Unix, where a process group cannot be
// signalled.
var ErrUnsupported = errors.New("service mode needs a Unix system (it signals process groups)")

// ConfigError is an error in the configuration (Config, and the queue
// contract of Config.Queue): the caller's to fix, found before anything
// runs. New returns it; errors.As finds it.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }

// Unwrap returns the error it wraps.
func (e *ConfigError) Unwrap() error { return e.Err }

// configErr marks err as a ConfigError (nil stays nil).
func configErr(err error) error {
	if err == nil {
		return nil
	}
	return &ConfigError{Err: err}
}

// defaults checks the configuration and fills in its defaults; its errors
// are ConfigErrors.
func (c *Config) defaults() error { return configErr(c.fill()) }

func (c *Config) fill() error {
	if c.Command == "" {
		return errors.New("service: no command")
	}
	switch {
	case c.ObserveSQL == "" && c.Observe == nil:
		return errors.New("service: no observation: set ObserveSQL (a query) or Observe (a function)")
	case c.ObserveSQL != "" && c.Observe != nil:
		return errors.New("service: ObserveSQL and Observe are both set: the state is read one way, set one")
	}
	if c.DSN == "" {
		return errors.New("service: no PostgreSQL server (set $ONCECHECK_PG)")
	}
	if c.Consumers <= 0 {
		c.Consumers = 2
	}
	if c.Consumers > 16 {
		return fmt.Errorf("service: %d consumers, at most 16", c.Consumers)
	}
	if c.Model == nil {
		c.Model = model.Orders{}
	}
	if c.MaxMessages <= 0 {
		c.MaxMessages = 4
	}
	if c.MaxFaults <= 0 {
		c.MaxFaults = 2
	}
	if c.Quiet <= 0 {
		c.Quiet = 300 * time.Millisecond
	}
	if c.Settle == 0 {
		c.Settle = 50 * time.Millisecond
	}
	if c.Bound <= 0 {
		c.Bound = 30 * time.Second
	}
	if c.Output == nil {
		c.Output = io.Discard
	}
	if c.Broker == "" {
		c.Broker = "nats"
	}
	kinds, err := BrokerKinds(c.Broker)
	if err != nil {
		return err
	}
	if c.Broker != "postgres" && c.Queue != (PGQueue{}) {
		return fmt.Errorf("service: a queue table (--send-sql, Config.Queue) is the postgres broker's, not %s's", c.Broker)
	}
	if slices.Contains(c.Faults, faults.BrokerRestart) && c.Broker == "nats" && c.BrokerURL != "" {
		return fmt.Errorf("service: fault kind %s needs a broker oncecheck runs itself (the embedded NATS server), not the external server %s", faults.BrokerRestart, c.BrokerURL)
	}
	for _, k := range c.Faults {
		if !slices.Contains(kinds, k) {
			names := make([]string, len(kinds))
			for i, k := range kinds {
				names[i] = string(k)
			}
			return fmt.Errorf("service: fault kind %s is not injected in service mode on %s yet (these are: %s)", k, c.Broker, strings.Join(names, ", "))
		}
	}
	return nil
}

// generator draws a case: a workload of the model and up to MaxFaults
// faults of the configured kinds, placed on its deliveries and sends.
func (c *Config) generator() *rapid.Generator[Case] {
	return rapid.Custom(func(t *rapid.T) Case {
		w := c.Model.Workload(c.MaxMessages).Draw(t, "workload")
		plan := faults.Plan{Consumers: c.Consumers}
		var kinds []faults.Kind
		for _, k := range c.Faults {
			if k != faults.Concurrent { // concurrent is the consumers
				kinds = append(kinds, k)
			}
		}
		if len(kinds) == 0 {
			return Case{Workload: w, Plan: plan}
		}
		n := rapid.IntRange(0, c.MaxFaults).Draw(t, "faults")
		last := len(w) - 1
		for range n {
			f := faults.Fault{Kind: rapid.SampledFrom(kinds).Draw(t, "kind")}
			switch f.Kind {
			case faults.Crash:
				f.Process = faults.Consumer
				f.At = rapid.IntRange(0, last).Draw(t, "at")
				f.Point = rapid.SampledFrom(CrashPoints).Draw(t, "point")
				if indexed(f.Point) {
					f.Index = rapid.IntRange(0, 1).Draw(t, "index")
				}
			case faults.Redelivery:
				variants := []string{faults.AckLost, faults.LeaseExpired}
				if c.Broker == "postgres" { // a commit is not lost: only the lease runs out
					variants = variants[1:]
				}
				f.Variant = rapid.SampledFrom(variants).Draw(t, "variant")
				f.At = rapid.IntRange(0, last).Draw(t, "at")
				if f.Variant == faults.LeaseExpired {
					f.Index = rapid.IntRange(0, pauseAtStatement+1).Draw(t, "pause")
				}
			case faults.PublishFailure:
				f.Process = faults.Consumer
				f.Variant = rapid.SampledFrom([]string{faults.Rejected, faults.LostConfirm}).Draw(t, "variant")
				f.At = rapid.IntRange(0, last).Draw(t, "at")
				f.Index = rapid.IntRange(0, 1).Draw(t, "index")
			case faults.Reorder:
				f.At = rapid.IntRange(0, last).Draw(t, "at")
				f.Index = rapid.IntRange(1, faults.ReorderWindow).Draw(t, "distance")
			case faults.Reissue:
				f.Index = rapid.IntRange(0, last).Draw(t, "message")
				f.At = rapid.IntRange(f.Index+1, len(w)).Draw(t, "after")
			case faults.CutConnection:
				f.At = rapid.IntRange(0, last).Draw(t, "at")
				f.Index = rapid.IntRange(0, cutStatements-1).Draw(t, "statement")
			case faults.BrokerRestart:
				f.At = rapid.IntRange(0, last).Draw(t, "at")
			case faults.Late:
				f.At = rapid.IntRange(0, last).Draw(t, "at")
				f.Variant = rapid.SampledFrom([]string{"", faults.LateReissue}).Draw(t, "variant")
				f.Delay = faults.Duration(lateDelay)
			}
			plan.Faults = append(plan.Faults, f)
		}
		return Case{Workload: w, Plan: plan}
	})
}

// Describe renders a fault as service mode injects it, for reports.
func Describe(f faults.Fault) string {
	switch {
	case f.Kind == faults.Crash && f.Point == faults.BeforeHandle:
		return fmt.Sprintf("SIGKILL the consumer that delivery #%d reaches, before it gets the copy", f.At+1)
	case f.Kind == faults.Crash && f.Point == faults.BeforePublish:
		return fmt.Sprintf("SIGKILL the consumer of delivery #%d as its publish #%d reaches the proxy (not forwarded)", f.At+1, f.Index+1)
	case f.Kind == faults.Crash && f.Point == faults.AfterPublish:
		return fmt.Sprintf("SIGKILL the consumer of delivery #%d after the broker took its publish #%d, before it sees the confirmation", f.At+1, f.Index+1)
	case f.Kind == faults.Crash && f.Point == faults.AfterWrite:
		return fmt.Sprintf("SIGKILL the consumer of delivery #%d after the server ran its SQL write #%d, before it sees the reply", f.At+1, f.Index+1)
	case f.Kind == faults.Crash && f.Point == faults.BeforeCommit:
		return fmt.Sprintf("SIGKILL the consumer of delivery #%d as its COMMIT #%d reaches the proxy (not forwarded: the server rolls back)", f.At+1, f.Index+1)
	case f.Kind == faults.Crash && f.Point == faults.AfterCommit:
		return fmt.Sprintf("SIGKILL the consumer of delivery #%d after the server committed its commit #%d, before it sees the reply", f.At+1, f.Index+1)
	case f.Kind == faults.Crash && f.Point == faults.BeforeAck:
		return fmt.Sprintf("SIGKILL the consumer of delivery #%d as its ack reaches the proxy (not forwarded)", f.At+1)
	case f.Kind == faults.Crash && f.Point == AfterAck:
		return fmt.Sprintf("SIGKILL the consumer of delivery #%d just after its ack went to the broker", f.At+1)
	case f.Kind == faults.Redelivery && f.Variant == faults.AckLost:
		return fmt.Sprintf("the proxy drops the ack of delivery #%d: redelivered", f.At+1)
	case f.Kind == faults.Redelivery && f.Variant == faults.LeaseExpired && f.Index == 0:
		return fmt.Sprintf("SIGSTOP the consumer of delivery #%d as the copy reaches it, past its ack wait, then SIGCONT", f.At+1)
	case f.Kind == faults.Redelivery && f.Variant == faults.LeaseExpired && f.Index == 1:
		return fmt.Sprintf("SIGSTOP the consumer of delivery #%d as its ack reaches the proxy, past its ack wait, then SIGCONT and forward the ack", f.At+1)
	case f.Kind == faults.Redelivery && f.Variant == faults.LeaseExpired:
		return fmt.Sprintf("SIGSTOP the consumer of delivery #%d as the server's reply to its SQL statement #%d comes back, past its ack wait, then SIGCONT and forward the reply", f.At+1, f.Index-pauseAtStatement+1)
	case f.Kind == faults.PublishFailure && f.Variant == faults.Rejected:
		return fmt.Sprintf("the proxy refuses publish #%d of delivery #%d: not forwarded, the publisher gets an error", f.Index+1, f.At+1)
	case f.Kind == faults.PublishFailure:
		return fmt.Sprintf("publish #%d of delivery #%d reaches the broker, but the proxy turns its confirmation into an error", f.Index+1, f.At+1)
	case f.Kind == faults.Reorder:
		return fmt.Sprintf("send #%d is published %d places later", f.At+1, f.Index)
	case f.Kind == faults.Reissue:
		return fmt.Sprintf("after send #%d oncecheck publishes workload message #%d again with a new id", f.At, f.Index+1)
	case f.Kind == faults.CutConnection:
		return fmt.Sprintf("the PostgreSQL proxy cuts the db connection of the consumer of delivery #%d, both sides, as the server's reply to statement #%d of a transaction (BEGIN not counted) comes back: the server rolls the transaction back", f.At+1, f.Index+1)
	case f.Kind == faults.Late && f.Variant == faults.LateReissue:
		return fmt.Sprintf("once the attempt of delivery #%d has ended, and %s more, the sender publishes its message again with a new id and the same key", f.At+1, f.Delay)
	case f.Kind == faults.Late:
		return fmt.Sprintf("once the attempt of delivery #%d has ended, and %s more, the sender publishes its copy again with the same id (a producer's retry arriving after the broker's duplicate window)", f.At+1, f.Delay)
	case f.Kind == faults.BrokerRestart:
		return fmt.Sprintf("oncecheck stops the broker just after delivery #%d and starts it again on the same storage and port: clients reconnect, unacknowledged copies come back after their ack wait", f.At+1)
	}
	return f.String()
}

// Ctx-free helpers below keep the run's code short.

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
