package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/internal/pgtest"
	"github.com/oncecheck/oncecheck/model"
	"github.com/oncecheck/oncecheck/service"
)

// bin is the service, built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "oncecheck-kafka-orders-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "orders")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the service: %v\n%s", err, out)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// config returns the service-mode configuration of this service on Kafka
// (kfake in process, or $ONCECHECK_KAFKA), with the broken variant bug
// ("" for the correct one).
func config(t *testing.T, bug string, kinds ...faults.Kind) service.Config {
	t.Helper()
	dsn := pgtest.DSN(t)
	schema, err := os.ReadFile("schema.sql")
	require.NoError(t, err)
	cfg := service.Config{
		Command: "ORDERS_BUG=" + bug + " exec " + bin, Schema: string(schema),
		ObserveSQL: "SELECT aggregate, state FROM orders", Faults: kinds, DSN: dsn,
		Broker: "kafka", BrokerURL: os.Getenv("ONCECHECK_KAFKA"),
	}
	if os.Getenv("ORDERS_LOG") != "" {
		cfg.Output = os.Stderr
	}
	return cfg
}

// runner returns a service-mode runner of this service.
func runner(t *testing.T, bug string, kinds ...faults.Kind) *service.Runner {
	t.Helper()
	r, err := service.New(config(t, bug, kinds...))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	return r
}

// one is a workload of one message.
func one() model.Workload {
	return model.Workload{{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)}}.Number()
}

// TestCorrectServiceNoFaults: deliveries, SQL, publishes and commits are
// seen and the run drains and passes.
func TestCorrectServiceNoFaults(t *testing.T) {
	r := runner(t, "")
	c := service.Case{
		Workload: model.Workload{
			{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)},
			{Aggregate: "o2", Type: model.AddItem, Payload: []byte(`{"qty":2,"sku":"b"}`)},
			{Aggregate: "o1", Type: model.Confirm},
		}.Number(),
		Plan: faults.Plan{Consumers: 2},
	}
	h, res, err := r.Run(context.Background(), c, 0)
	require.NoError(t, err)
	require.Equal(t, histories.Pass, res.Verdict, "%v\n%s", res.Findings, h.Timeline())
	kinds := map[histories.Kind]int{}
	for _, ev := range h.Events {
		kinds[ev.Kind]++
	}
	t.Logf("timings: %+v", r.Timings())
	require.GreaterOrEqual(t, kinds[histories.Deliver], 3, "%s", h.Timeline())
	require.Equal(t, 3, kinds[histories.Ack], "%s", h.Timeline())
	require.GreaterOrEqual(t, kinds[histories.Publish], 4, "%s", h.Timeline())
	require.Equal(t, 1, kinds[histories.Drain], "%s", h.Timeline())
}

// TestCommitFirstIsCaught: the variant that commits a record's offset as
// it arrives loses it when its process dies before the work is committed.
func TestCommitFirstIsCaught(t *testing.T) {
	r := runner(t, "commit-first", faults.Crash)
	c := service.Case{
		Workload: one(),
		Plan:     faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: service.AfterAck}}},
	}
	h, res, err := r.Run(context.Background(), c, 0)
	require.NoError(t, err)
	require.Equal(t, histories.Violation, res.Verdict, "%s", h.Timeline())
	require.Equal(t, histories.Lost, res.Primary())
}

// TestEveryCrashPointStrikes: each crash point of service mode is a
// boundary this service (pgx, franz-go) passes on Kafka, so a crash
// planned there strikes, and the correct service survives it.
func TestEveryCrashPointStrikes(t *testing.T) {
	r := runner(t, "", faults.Crash)
	for _, point := range service.CrashPoints {
		c := service.Case{
			Workload: one(),
			Plan:     faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: point}}},
		}
		h, res, err := r.Run(context.Background(), c, 0)
		require.NoError(t, err)
		require.Equal(t, histories.Pass, res.Verdict, "%s: %v\n%s", point, res.Findings, h.Timeline())
		crashed := false
		for _, ev := range h.Events {
			crashed = crashed || ev.Kind == histories.Crash && ev.Point == string(point)
		}
		require.True(t, crashed, "%s: the crash did not strike\n%s", point, h.Timeline())
	}
}

// TestCorrectServiceSurvivesPublishFailures: a produce the proxy refuses
// (NOT_ENOUGH_REPLICAS, nothing stored) and one the broker stores while
// the producer is told it timed out (REQUEST_TIMED_OUT) are retried by
// franz-go's idempotent producer, under the same ids.
func TestCorrectServiceSurvivesPublishFailures(t *testing.T) {
	r := runner(t, "", faults.PublishFailure)
	for _, variant := range []string{faults.Rejected, faults.LostConfirm} {
		c := service.Case{
			Workload: one(),
			Plan:     faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.PublishFailure, Variant: variant, Process: faults.Consumer, At: 0, Index: 1}}},
		}
		h, res, err := r.Run(context.Background(), c, 0)
		require.NoError(t, err)
		require.Equal(t, histories.Pass, res.Verdict, "%s: %v\n%s", variant, res.Findings, h.Timeline())
		require.Equal(t, 1, h.InjectedFaults()[string(faults.PublishFailure)], "%s: the fault struck once\n%s", variant, h.Timeline())
	}
}

// TestLostCommitIsRedelivered: a lost offset commit (the process is told
// it succeeded) followed by the rebalance oncecheck forces gives the
// record to a member again; the correct service's inbox drops it.
func TestLostCommitIsRedelivered(t *testing.T) {
	r := runner(t, "", faults.Redelivery)
	c := service.Case{
		Workload: one(),
		Plan:     faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Redelivery, Variant: faults.AckLost, At: 0}}},
	}
	h, res, err := r.Run(context.Background(), c, 0)
	require.NoError(t, err)
	require.Equal(t, histories.Pass, res.Verdict, "%v\n%s", res.Findings, h.Timeline())
	delivered := 0
	for _, ev := range h.Events {
		if ev.Kind == histories.Deliver {
			delivered++
		}
	}
	require.GreaterOrEqual(t, delivered, 2, "redelivered\n%s", h.Timeline())
	if os.Getenv("ORDERS_LOG") != "" {
		t.Logf("%s", h.Timeline())
	}
}

// lostThenNext is two records of one order for one consumer process, the
// first one's commit lost: oncecheck removes the member from the group
// while the process handles the second record, whose commit the group
// then refuses (UNKNOWN_MEMBER_ID). One process: no other member can
// take the partition over and start it from the committed offset.
func lostThenNext() service.Case {
	return service.Case{
		Workload: model.Workload{
			{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)},
			{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":2,"sku":"b"}`)},
		}.Number(),
		Plan: faults.Plan{Consumers: 1, Faults: []faults.Fault{{Kind: faults.Redelivery, Variant: faults.AckLost, At: 0}}},
	}
}

// TestRemovedMemberStartsFromTheCommit: the case of the runs that were
// stuck (seeds 50158 and 60007): with the eager balancer, the removed
// member's rejoin takes every partition from it, and the partition starts
// again from its committed offset, so the group's commits reach the end.
func TestRemovedMemberStartsFromTheCommit(t *testing.T) {
	r := oneConsumer(t, "")
	for range 3 {
		h, res, err := r.Run(context.Background(), lostThenNext(), 0)
		require.NoError(t, err)
		require.Equal(t, histories.Pass, res.Verdict, "%v\n%s", res.Findings, h.Timeline())
	}
}

// TestCooperativeIsCaught: on franz-go's default cooperative rebalancing,
// the removed member rejoins from its refused commit still claiming its
// partition and goes on from its own position: nobody reads the record of
// the lost commit again, nobody commits past it, and the run is stuck
// with the group's committed offset short of the end. Whether the refused
// commit comes before the member's next heartbeat (100 ms) is a race, so
// the case gets up to four runs.
func TestCooperativeIsCaught(t *testing.T) {
	r := oneConsumer(t, "cooperative")
	var h *histories.History
	var res checkers.Result
	for range 4 {
		var err error
		h, res, err = r.Run(context.Background(), lostThenNext(), 0)
		require.NoError(t, err)
		if res.Verdict == histories.Violation {
			break
		}
	}
	require.Equal(t, histories.Violation, res.Verdict, "%s", h.Timeline())
	require.Equal(t, histories.Stuck, res.Primary(), "%s", h.Timeline())
	require.Contains(t, res.Findings[0].Text, "no commit of their group covers", "%v", res.Findings)
	t.Log(res.Findings[0].Text)
}

// oneConsumer returns a runner of one process of the service under lost
// commits; a stuck run is told after 5 s.
func oneConsumer(t *testing.T, bug string) *service.Runner {
	t.Helper()
	cfg := config(t, bug, faults.Redelivery)
	cfg.Consumers, cfg.Bound = 1, 5*time.Second
	r, err := service.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	return r
}

// TestCheckFirstIsCaught: the zombie. The variant that reads its inbox
// before its transaction, and does not look at what the inbox insert
// finds, applies a record twice when its process stands still past its
// session timeout after that read: the group rebalances, the other member
// gets the partition from the last committed offset and applies the
// record, and the first one wakes up and applies it again. Kafka refuses
// the zombie's offset commit (recorded after its ack); the database
// accepted its transaction.
func TestCheckFirstIsCaught(t *testing.T) {
	r := runner(t, "check-first", faults.Redelivery)
	c := service.Case{
		Workload: one(),
		Plan:     faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Redelivery, Variant: faults.LeaseExpired, At: 0, Index: 2}}},
	}
	// The other member must own the partition before the zombie wakes
	// up: usually so, but on a loaded machine the rebalance can outlast
	// the pause (then the zombie finds its own work, and passes), so the
	// case gets up to three runs.
	var h *histories.History
	var res checkers.Result
	for range 3 {
		var err error
		h, res, err = r.Run(context.Background(), c, 0)
		require.NoError(t, err)
		if res.Verdict == histories.Violation {
			break
		}
	}
	require.Equal(t, histories.Violation, res.Verdict, "%s", h.Timeline())
	require.Equal(t, histories.Duplicate, res.Primary(), "%s", h.Timeline())
	if os.Getenv("ORDERS_LOG") != "" {
		t.Logf("%s", h.Timeline())
	}
}

// TestCorrectServiceSurvivesAZombie: the correct service under the same
// pause: the zombie's inbox insert finds the key, and Kafka refuses its
// commit.
func TestCorrectServiceSurvivesAZombie(t *testing.T) {
	r := runner(t, "", faults.Redelivery)
	indexes := []int{0, 1, 2, 3} // at the delivery, at the commit, at SQL statements 1 and 2
	if testing.Short() {
		indexes = []int{1, 2}
	}
	for _, index := range indexes {
		c := service.Case{
			Workload: one(),
			Plan:     faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Redelivery, Variant: faults.LeaseExpired, At: 0, Index: index}}},
		}
		h, res, err := r.Run(context.Background(), c, 0)
		require.NoError(t, err)
		require.Equal(t, histories.Pass, res.Verdict, "pause %d: %v\n%s", index, res.Findings, h.Timeline())
	}
}

// TestCorrectServicePasses runs the correct service under every fault
// kind service mode injects on Kafka: every run is exactly-once.
func TestCorrectServicePasses(t *testing.T) {
	runs := 12
	if testing.Short() {
		runs = 6
	}
	service.Verify(t, config(t, "", service.KafkaKinds...), service.VerifyOptions{Runs: runs, Out: t.TempDir()})
}

// recorder is a TB that keeps what Verify reports.
type recorder struct {
	*testing.T
	errors []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

// TestVerifyFindsShrinksAndExplains: a search over generated cases finds
// the commit-first variant's lost record, shrinks it, explains it and
// saves its history.
func TestVerifyFindsShrinksAndExplains(t *testing.T) {
	rec := &recorder{T: t}
	out := t.TempDir()
	tries := 3
	if testing.Short() {
		tries = 1
	}
	// The kinds seeds 1 to 10 were chosen with.
	kinds := []faults.Kind{faults.Crash, faults.Redelivery, faults.Reorder, faults.PublishFailure, faults.Reissue, faults.Concurrent}
	service.Verify(rec, config(t, "commit-first", kinds...), service.VerifyOptions{Runs: 10, Seed: 1, ShrinkTries: tries, Out: out})
	require.Len(t, rec.errors, 1)
	msg := rec.errors[0]
	t.Log(msg)
	require.Contains(t, msg, "VIOLATION: lost")
	require.Contains(t, msg, "saved: "+out)
}

// txnConfig is config with the events and offsets in Kafka transactions
// (ORDERS_PRODUCE=txn).
func txnConfig(t *testing.T, bug string, kinds ...faults.Kind) service.Config {
	t.Helper()
	cfg := config(t, bug, kinds...)
	cfg.Command = "ORDERS_PRODUCE=txn " + cfg.Command
	return cfg
}

// txnRunner returns a runner of txnConfig, with its number of processes.
func txnRunner(t *testing.T, consumers int, bug string, kinds ...faults.Kind) *service.Runner {
	t.Helper()
	cfg := txnConfig(t, bug, kinds...)
	cfg.Consumers = consumers
	r, err := service.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	return r
}

// committedBy says whether h has a publish and an ack recorded at a
// committed transaction's EndTxn.
func committedBy(h *histories.History) bool {
	pub, ack := false, false
	for _, ev := range h.Events {
		pub = pub || ev.Kind == histories.Publish && strings.Contains(ev.Detail, "EndTxn(commit)")
		ack = ack || ev.Kind == histories.Ack && strings.Contains(ev.Detail, "EndTxn(commit)")
	}
	return pub && ack
}

// TestTxnServiceNoFaults: the transactional service's outputs and offset
// commits are recorded when their transaction commits.
func TestTxnServiceNoFaults(t *testing.T) {
	r := txnRunner(t, 2, "")
	c := service.Case{
		Workload: model.Workload{
			{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)},
			{Aggregate: "o2", Type: model.AddItem, Payload: []byte(`{"qty":2,"sku":"b"}`)},
			{Aggregate: "o1", Type: model.Confirm},
		}.Number(),
		Plan: faults.Plan{Consumers: 2},
	}
	h, res, err := r.Run(context.Background(), c, 0)
	require.NoError(t, err)
	require.Equal(t, histories.Pass, res.Verdict, "%v\n%s", res.Findings, h.Timeline())
	require.True(t, committedBy(h), "%s", h.Timeline())
	if os.Getenv("ORDERS_LOG") != "" {
		t.Logf("%s", h.Timeline())
	}
}

// TestTxnEveryCrashPoint: each crash point strikes the transactional
// service (before-publish and before-ack drop its EndTxn(commit), the
// broker aborts the transaction; after-publish and after-ack hold the
// broker's answer to it), and the service survives it. With -short, the
// four at the EndTxn.
func TestTxnEveryCrashPoint(t *testing.T) {
	r := txnRunner(t, 1, "", faults.Crash)
	points := service.CrashPoints
	if testing.Short() { // the points at the EndTxn
		points = []faults.Point{faults.BeforePublish, faults.AfterPublish, faults.BeforeAck, service.AfterAck}
	}
	for _, point := range points {
		// One process: a second one joining the group would abort the
		// first transaction, before the crash planned at its EndTxn.
		c := service.Case{
			Workload: one(),
			Plan:     faults.Plan{Consumers: 1, Faults: []faults.Fault{{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: point}}},
		}
		h, res, err := r.Run(context.Background(), c, 0)
		require.NoError(t, err)
		require.Equal(t, histories.Pass, res.Verdict, "%s: %v\n%s", point, res.Findings, h.Timeline())
		crashed := false
		for _, ev := range h.Events {
			crashed = crashed || ev.Kind == histories.Crash && ev.Point == string(point)
		}
		require.True(t, crashed, "%s: the crash did not strike\n%s", point, h.Timeline())
	}
}

// TestTxnLostEndTxnAndPublishFailures: a produce refused inside the
// transaction is retried; a lost EndTxn response (publish-failure
// lost-ack, redelivery ack-lost) is retried by the producer and answered
// by the broker from the transaction it committed.
func TestTxnLostEndTxnAndPublishFailures(t *testing.T) {
	r := txnRunner(t, 1, "", faults.PublishFailure, faults.Redelivery)
	for _, fl := range []faults.Fault{
		{Kind: faults.PublishFailure, Variant: faults.Rejected, Process: faults.Consumer, At: 0, Index: 1},
		{Kind: faults.PublishFailure, Variant: faults.LostConfirm, Process: faults.Consumer, At: 0, Index: 1},
		{Kind: faults.Redelivery, Variant: faults.AckLost, At: 0},
	} {
		c := service.Case{Workload: one(), Plan: faults.Plan{Consumers: 1, Faults: []faults.Fault{fl}}}
		h, res, err := r.Run(context.Background(), c, 0)
		require.NoError(t, err)
		require.Equal(t, histories.Pass, res.Verdict, "%s: %v\n%s", service.Describe(fl), res.Findings, h.Timeline())
		require.Equal(t, 1, h.InjectedFaults()[string(fl.Kind)], "%s: the fault struck once\n%s", service.Describe(fl), h.Timeline())
		require.True(t, committedBy(h), "%s", h.Timeline())
		if os.Getenv("ORDERS_LOG") != "" {
			t.Logf("%s:\n%s", service.Describe(fl), strings.Join(h.Timeline(), "\n"))
		}
	}
}

// TestTxnServiceSurvivesAZombie: a transactional member paused past its
// session timeout: at the delivery, with its EndTxn held (the broker has
// aborted its transaction on its timeout by then and fences the EndTxn),
// and at its SQL statements. The inbox drops the zombie's database
// change; Kafka aborts its events and offsets.
func TestTxnServiceSurvivesAZombie(t *testing.T) {
	r := txnRunner(t, 2, "", faults.Redelivery)
	indexes := []int{0, 1, 2, 3}
	if testing.Short() {
		indexes = []int{1, 2}
	}
	for _, index := range indexes {
		c := service.Case{
			Workload: one(),
			Plan:     faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Redelivery, Variant: faults.LeaseExpired, At: 0, Index: index}}},
		}
		// The pause at the EndTxn needs the first transaction to reach
		// it: the second process joining the group can abort it before,
		// so that case gets up to three runs.
		for try := 0; ; try++ {
			h, res, err := r.Run(context.Background(), c, 0)
			require.NoError(t, err)
			require.Equal(t, histories.Pass, res.Verdict, "pause %d: %v\n%s", index, res.Findings, h.Timeline())
			if os.Getenv("ORDERS_LOG") != "" {
				t.Logf("pause %d:\n%s", index, strings.Join(h.Timeline(), "\n"))
			}
			fenced := false
			for _, ev := range h.Events {
				fenced = fenced || ev.Kind == histories.Refused && strings.Contains(ev.Detail, "the broker refused the EndTxn(commit)")
			}
			if index != 1 || fenced {
				break
			}
			require.Less(t, try, 2, "the zombie's EndTxn is refused\n%s", h.Timeline())
		}
	}
}

// TestEOSOnlyIsCaught: the variant without an inbox, which trusts Kafka's
// exactly-once for its database: a crash after its database commit and
// before its EndTxn reaches the broker aborts the transaction, the record
// comes again, and the database change is made twice.
func TestEOSOnlyIsCaught(t *testing.T) {
	r := txnRunner(t, 1, "eos-only", faults.Crash)
	c := service.Case{
		Workload: one(),
		Plan:     faults.Plan{Consumers: 1, Faults: []faults.Fault{{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: faults.BeforeAck}}},
	}
	h, res, err := r.Run(context.Background(), c, 0)
	require.NoError(t, err)
	require.Equal(t, histories.Violation, res.Verdict, "%s", h.Timeline())
	require.Equal(t, histories.Duplicate, res.Primary(), "%v\n%s", res.Findings, h.Timeline())
}

// TestTxnServicePasses runs the transactional service under every fault
// kind service mode injects on Kafka.
func TestTxnServicePasses(t *testing.T) {
	runs := 12
	if testing.Short() {
		runs = 4
	}
	service.Verify(t, txnConfig(t, "", service.KafkaKinds...), service.VerifyOptions{Runs: runs, Seed: 70000, Out: t.TempDir()})
}
