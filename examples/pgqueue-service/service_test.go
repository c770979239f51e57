package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/internal/pgtest"
	"github.com/oncecheck/oncecheck/model"
	"github.com/oncecheck/oncecheck/service"
)

// bin is this service, built once by TestMain for every test.
var bin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "oncecheck-pgqueue-service-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "orders")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the service: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// queue is this service's queue contract, as docs/service-mode-postgres.md
// shows it on the command line.
var queue = service.PGQueue{
	SendSQL:    "INSERT INTO jobs (id, key, type, aggregate, payload) VALUES ($1, $2, $3, $4, $5)",
	DoneWhen:   "done",
	Outputs:    "events",
	ReleaseSQL: "UPDATE jobs SET locked_until = NULL WHERE id = $1 AND NOT done",
}

// config returns the service-mode configuration of this service on its
// queue table, with the claim mode env ("QUEUE_CLAIM=lock", or "") and the
// broken variant bug ("" for the correct one).
func config(t testing.TB, env, bug string, kinds ...faults.Kind) service.Config {
	t.Helper()
	dsn := pgtest.DSN(t)
	schema, err := os.ReadFile("schema.sql")
	require.NoError(t, err)
	return service.Config{
		Command: env + " ORDERS_BUG=" + bug + " exec " + bin, Schema: string(schema),
		ObserveSQL: "SELECT aggregate, state FROM orders", Faults: kinds, DSN: dsn,
		Broker: "postgres", Queue: queue,
	}
}

// runner returns a service-mode runner of cfg.
func runner(t *testing.T, cfg service.Config) *service.Runner {
	t.Helper()
	r, err := service.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	return r
}

// one is a workload of one message.
func one() model.Workload {
	return model.Workload{{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)}}.Number()
}

// run runs one case of one fault on the one-message workload.
func run(t *testing.T, r *service.Runner, f faults.Fault) (*histories.History, histories.Verdict, histories.Anomaly) {
	t.Helper()
	c := service.Case{Workload: one(), Plan: faults.Plan{Consumers: 2, Faults: []faults.Fault{f}}}
	h, res, err := r.Run(context.Background(), c, 0)
	require.NoError(t, err)
	return h, res.Verdict, res.Primary()
}

// count counts the events of a kind, and of those whose detail has part.
func count(h *histories.History, kind histories.Kind, part string) int {
	n := 0
	for _, ev := range h.Events {
		if ev.Kind == kind && strings.Contains(ev.Detail, part) {
			n++
		}
	}
	return n
}

// lockedBuffer is the processes' output, written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestCorrectServicePasses runs the correct service, each claim mode,
// under every fault kind service mode injects on a PostgreSQL queue:
// every run is exactly-once, and the notices of oncecheck's triggers
// never reach the service (it logs every notice it gets).
func TestCorrectServicePasses(t *testing.T) {
	runs := 12
	if testing.Short() {
		runs = 6
	}
	kinds, err := service.BrokerKinds("postgres")
	require.NoError(t, err)
	for _, env := range []string{"QUEUE_CLAIM=lease", "QUEUE_CLAIM=lock"} {
		t.Run(env, func(t *testing.T) {
			out := &lockedBuffer{}
			cfg := config(t, env, "", kinds...)
			cfg.Output = out
			service.Verify(t, cfg, service.VerifyOptions{Runs: runs, Out: t.TempDir()})
			require.NotContains(t, out.String(), "the server says", "a notice reached the service")
		})
	}
}

// TestDoneFirstIsCaught: the variant that marks its job done in a
// statement of its own before its work loses the job when its process
// dies after that commit: the job is finished, its work never done.
func TestDoneFirstIsCaught(t *testing.T) {
	r := runner(t, config(t, "", "done-first", faults.Crash))
	h, verdict, primary := run(t, r, faults.Fault{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: service.AfterAck})
	require.Equal(t, histories.Violation, verdict, "%s", h.Timeline())
	require.Equal(t, histories.Lost, primary)
}

// TestNoFenceIsCaught: the variant that finishes its job without checking
// its lease applies a job twice when its process stands still past the
// lease after taking it: the other worker takes the job, applies and
// finishes it; the first wakes, applies it again and finishes it again,
// which the table takes (a late ack). The pause strikes as the reply to
// its second statement, its read of the inbox, comes back.
func TestNoFenceIsCaught(t *testing.T) {
	r := runner(t, config(t, "", "no-fence", faults.Redelivery))
	h, verdict, primary := run(t, r, faults.Fault{Kind: faults.Redelivery, Variant: faults.LeaseExpired, At: 0, Index: 3})
	require.Equal(t, histories.Violation, verdict, "%s", h.Timeline())
	require.Equal(t, histories.Duplicate, primary)
	require.GreaterOrEqual(t, count(h, histories.Deliver, ""), 2, "the job was taken again\n%s", h.Timeline())
	require.Equal(t, 1, count(h, histories.Ack, "a late ack"), "the zombie finished the job again\n%s", h.Timeline())
}

// TestCorrectServiceFencesTheZombie: the correct variant, paused past its
// lease as the job reaches it, after it took it, or with its finishing
// COMMIT held, is not applied twice: the other worker takes the job over
// (except when the paused one holds the job's row lock, in its finishing
// transaction), and the late one's fenced finish matches nothing.
func TestCorrectServiceFencesTheZombie(t *testing.T) {
	r := runner(t, config(t, "", "", faults.Redelivery))
	for _, index := range []int{0, 1, 2, 3} {
		f := faults.Fault{Kind: faults.Redelivery, Variant: faults.LeaseExpired, At: 0, Index: index}
		h, verdict, _ := run(t, r, f)
		require.Equal(t, histories.Pass, verdict, "%s\n%s", service.Describe(f), h.Timeline())
		require.Equal(t, 1, count(h, histories.Requeue, "SIGSTOP"), "%s: the pause struck\n%s", service.Describe(f), h.Timeline())
		if index != 1 {
			require.GreaterOrEqual(t, count(h, histories.Deliver, ""), 2, "%s: the job was taken over\n%s", service.Describe(f), h.Timeline())
		}
	}
}

// TestEveryCrashPointStrikes: each crash point of service mode is a
// boundary this service passes on a PostgreSQL queue, in each claim
// mode, so a crash planned there strikes, and the correct service
// survives it. A leased job's first commit is its lease's, a statement
// outside a transaction: its first COMMIT is commit number 1.
func TestEveryCrashPointStrikes(t *testing.T) {
	for _, env := range []string{"QUEUE_CLAIM=lease", "QUEUE_CLAIM=lock"} {
		t.Run(env, func(t *testing.T) {
			r := runner(t, config(t, env, "", faults.Crash))
			for _, point := range service.CrashPoints {
				index := 0
				if point == faults.BeforeCommit && env == "QUEUE_CLAIM=lease" {
					index = 1
				}
				h, verdict, _ := run(t, r, faults.Fault{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: point, Index: index})
				require.Equal(t, histories.Pass, verdict, "%s\n%s", point, h.Timeline())
				crashed := false
				for _, ev := range h.Events {
					crashed = crashed || ev.Kind == histories.Crash && ev.Point == string(point)
				}
				require.True(t, crashed, "%s: the crash did not strike\n%s", point, h.Timeline())
			}
		})
	}
}

// TestEveryQueryExecMode: the proxy knows a delivery and an ack whichever
// way pgx sends its queries (prepared and cached, described each time,
// or the simple protocol), in each claim mode.
func TestEveryQueryExecMode(t *testing.T) {
	w := model.Workload{
		{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)},
		{Aggregate: "o2", Type: model.AddItem, Payload: []byte(`{"qty":2,"sku":"b"}`)},
	}.Number()
	for _, claim := range []string{"lease", "lock"} {
		r := runner(t, config(t, "QUEUE_CLAIM="+claim+" PGX_EXEC_MODE=$MODE", ""))
		for _, mode := range []string{"cache_statement", "cache_describe", "describe_exec", "exec", "simple_protocol"} {
			t.Setenv("MODE", mode)
			h, res, err := r.Run(context.Background(), service.Case{Workload: w, Plan: faults.Plan{Consumers: 2}}, 0)
			require.NoError(t, err)
			require.Equal(t, histories.Pass, res.Verdict, "%s, %s\n%s", claim, mode, h.Timeline())
			require.Equal(t, 2, count(h, histories.Deliver, ""), "%s, %s\n%s", claim, mode, h.Timeline())
			require.Equal(t, 2, count(h, histories.Ack, "finishes job"), "%s, %s\n%s", claim, mode, h.Timeline())
			require.Equal(t, 0, count(h, histories.Nack, ""), "%s, %s\n%s", claim, mode, h.Timeline())
		}
	}
}

// TestKilledLeaseComesBack: the job of a worker killed as it takes it
// (its lease committed) is taken again once the lease runs out, or at
// once when oncecheck gives it back with the release statement.
func TestKilledLeaseComesBack(t *testing.T) {
	for _, release := range []string{"", queue.ReleaseSQL} {
		cfg := config(t, "", "", faults.Crash)
		cfg.Queue.ReleaseSQL = release
		r := runner(t, cfg)
		h, verdict, _ := run(t, r, faults.Fault{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: faults.BeforeHandle})
		require.Equal(t, histories.Pass, verdict, "%s", h.Timeline())
		require.Equal(t, 2, count(h, histories.Deliver, ""), "%s", h.Timeline())
		given := count(h, histories.Requeue, "back to the broker")
		if release == "" {
			require.Zero(t, given, "%s", h.Timeline())
		} else {
			require.Equal(t, 1, given, "%s", h.Timeline())
		}
	}
}

// TestLockedJobRollsBack: a worker that holds the job's row lock for the
// whole job loses the job when its transaction rolls back (its database
// connection cut): a nack, and the job is taken again.
func TestLockedJobRollsBack(t *testing.T) {
	r := runner(t, config(t, "QUEUE_CLAIM=lock", "", faults.CutConnection))
	h, verdict, _ := run(t, r, faults.Fault{Kind: faults.CutConnection, At: 0, Index: 1})
	require.Equal(t, histories.Pass, verdict, "%s", h.Timeline())
	require.Equal(t, 1, count(h, histories.Abort, "the proxy cut"), "%s", h.Timeline())
	require.GreaterOrEqual(t, count(h, histories.Deliver, ""), 2, "the job was taken again\n%s", h.Timeline())
}

// recorder is a TB that keeps what Verify reports.
type recorder struct {
	*testing.T
	errors []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

// TestVerifyFindsShrinksAndExplainsDoneFirst: a search over generated
// cases finds the done-first variant's lost job, shrinks it, explains it
// and saves its history.
func TestVerifyFindsShrinksAndExplainsDoneFirst(t *testing.T) {
	rec := &recorder{T: t}
	out := t.TempDir()
	service.Verify(rec, config(t, "", "done-first", faults.Crash), service.VerifyOptions{Runs: 3, Seed: verifySeed, Out: out})
	require.Len(t, rec.errors, 1)
	msg := rec.errors[0]
	require.Contains(t, msg, "VIOLATION: lost", msg)
	require.Contains(t, msg, "SIGKILL the consumer of delivery #", msg)
	require.Contains(t, msg, "saved: "+out)
}

// verifySeed is a campaign seed whose third run (seed 12) kills the
// done-first variant as its statement that finishes the job commits,
// before its work's transaction.
const verifySeed = 10

// BenchmarkRuns measures generated runs of the correct service on its
// queue table, two consumers and every fault kind, up to 4 messages and
// 2 faults a case: b.N runs, each checked; a failing one fails the
// benchmark. It reports runs per second and where the time went.
func BenchmarkRuns(b *testing.B) {
	kinds, err := service.BrokerKinds("postgres")
	require.NoError(b, err)
	r, err := service.New(config(b, "", "", kinds...))
	require.NoError(b, err)
	defer r.Close()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		seed := uint64(i + 1)
		h, res, err := r.Run(context.Background(), r.Generate(seed), seed)
		require.NoError(b, err)
		require.Equal(b, histories.Pass, res.Verdict, "seed %d: %v\n%s", seed, res.Findings, h.Timeline())
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "runs/s")
	b.Logf("%+v", r.Timings())
}

// TestCrashAfterAckIsExplained: a crash planned at the after-ack of the
// lost job's delivery strikes once the attempt has ended (its ack
// recorded); the explanation still names it as the fault that struck the
// job's key, with its boundary and the reply it held.
func TestCrashAfterAckIsExplained(t *testing.T) {
	r := runner(t, config(t, "", "done-first", faults.Crash))
	c := service.Case{Workload: one(), Plan: faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: service.AfterAck}}}}
	h, res, err := r.Run(context.Background(), c, 0)
	require.NoError(t, err)
	require.Equal(t, histories.Lost, res.Primary(), "%s", h.Timeline())
	text := res.Findings[0].Text
	require.Contains(t, text, "The fault that struck it: step ", text)
	require.Contains(t, text, "in attempt #1 (k1), after the attempt ended, at the boundary after-ack", text)
	require.Contains(t, text, "the reply held to the commit that finished job m1", text)
	require.NotContains(t, text, "between deliveries", text)
}

// TestAutocommitFinishIsStruck: the done-first variant finishes its job
// in a statement outside a transaction. Sent with the extended protocol
// (pgx's default), the statement commits at the Sync after it, which the
// proxy holds: a crash before-ack strikes there, the server rolls the
// finish back and the job is taken again (the run passes). Sent as a
// simple query, it commits as the server runs it, before the proxy can
// know it is an ack: the crash strikes as its reply comes back, as
// after-ack does, and the job is lost. A lease-expired pause at the ack
// (index 1) strikes in both.
func TestAutocommitFinishIsStruck(t *testing.T) {
	for _, mode := range []string{"cache_statement", "simple_protocol"} {
		r := runner(t, config(t, "PGX_EXEC_MODE="+mode, "done-first", faults.Crash, faults.Redelivery))
		h, verdict, primary := run(t, r, faults.Fault{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: faults.BeforeAck})
		struck := 0
		for _, ev := range h.Events {
			if ev.Kind == histories.Crash && ev.Point == string(faults.BeforeAck) {
				struck++
				if mode == "cache_statement" {
					require.Equal(t, 1, ev.Attempt, "the crash struck the open attempt\n%s", h.Timeline())
					require.Contains(t, ev.Detail, "the Sync held", h.Timeline())
				}
			}
		}
		require.Equal(t, 1, struck, "%s: %s", mode, h.Timeline())
		if mode == "cache_statement" {
			require.Equal(t, histories.Pass, verdict, "%s", h.Timeline())
			require.Equal(t, 2, count(h, histories.Deliver, ""), "the finish rolled back: the job was taken again\n%s", h.Timeline())
			require.Equal(t, 1, count(h, histories.Abort, "the proxy held the Sync"), "%s", h.Timeline())
		} else {
			require.Equal(t, histories.Violation, verdict, "%s", h.Timeline())
			require.Equal(t, histories.Lost, primary)
		}
		h, _, _ = run(t, r, faults.Fault{Kind: faults.Redelivery, Variant: faults.LeaseExpired, At: 0, Index: 1})
		require.Equal(t, 1, count(h, histories.Requeue, "SIGSTOP"), "%s: the pause struck\n%s", mode, h.Timeline())
	}
}

// TestBrokenReleaseFailsTheRun: a release statement the server refuses is
// a harness error of the run, not a silent wait for the lease.
func TestBrokenReleaseFailsTheRun(t *testing.T) {
	cfg := config(t, "", "", faults.Crash)
	cfg.Queue.ReleaseSQL = "UPDATE jobs SET no_such_column = 1 WHERE id = $1"
	r := runner(t, cfg)
	c := service.Case{Workload: one(), Plan: faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: faults.BeforeHandle}}}}
	_, _, err := r.Run(context.Background(), c, 0)
	require.ErrorContains(t, err, "the release statement")
	require.ErrorContains(t, err, "no_such_column")
}

// TestBeginCarriesItsWritesAttempt: in lock mode the transaction's BEGIN
// comes before the row it takes; its begin event carries the attempt its
// writes carry (the delivery it took), not the process's previous one.
func TestBeginCarriesItsWritesAttempt(t *testing.T) {
	w := model.Workload{
		{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)},
		{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":2,"sku":"b"}`)},
		{Aggregate: "o2", Type: model.AddItem, Payload: []byte(`{"qty":2,"sku":"b"}`)},
	}.Number()
	cfg := config(t, "QUEUE_CLAIM=lock", "")
	cfg.Consumers = 1
	r := runner(t, cfg)
	h, res, err := r.Run(context.Background(), service.Case{Workload: w, Plan: faults.Plan{Consumers: 1}}, 0)
	require.NoError(t, err)
	require.Equal(t, histories.Pass, res.Verdict, "%s", h.Timeline())
	begins := map[int]int{} // tx -> the begin's attempt
	writes := 0
	for _, ev := range h.Events {
		switch ev.Kind {
		case histories.Begin:
			begins[ev.Tx] = ev.Attempt
		case histories.Write:
			if a, ok := begins[ev.Tx]; ok {
				writes++
				require.Equal(t, ev.Attempt, a, "tx%d\n%s", ev.Tx, h.Timeline())
			}
		}
	}
	require.GreaterOrEqual(t, writes, 3, "%s", h.Timeline())
}
