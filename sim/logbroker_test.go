package sim

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/naive"
	"github.com/oncecheck/oncecheck/adapters/outbox"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// Aggregates o1 and o2 hash to partition 1, o3 to partition 0; with two
// consumers, partition 0 (and 2) go to consumer-1, partition 1 to
// consumer-2.
func TestPartitionIsAStableHashOfTheAggregate(t *testing.T) {
	require.Equal(t, 1, Partition("o1"))
	require.Equal(t, 1, Partition("o2"))
	require.Equal(t, 0, Partition("o3"))
	require.Equal(t, 2, Partition("p2"))
	require.Equal(t, []int{0, 1, 0}, assignment([]bool{true, true}))
	require.Equal(t, []int{1, 1, 1}, assignment([]bool{false, true}))
	require.Equal(t, []int{-1, -1, -1}, assignment([]bool{false, false}))
}

func TestParseBroker(t *testing.T) {
	for in, want := range map[string]string{"": BrokerQueue, "queue": BrokerQueue, "log": BrokerLog} {
		got, err := ParseBroker(in)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	_, err := ParseBroker("kafka")
	require.ErrorContains(t, err, `unknown broker "kafka" (known: queue, log)`)
}

func adds(aggs ...string) model.Workload {
	var w model.Workload
	for _, a := range aggs {
		w = append(w, model.Message{Aggregate: a, Type: model.AddItem, Payload: []byte(`{"sku":"a","qty":1}`)})
	}
	return w.Number()
}

func runLog(t *testing.T, s string, w model.Workload, p faults.Plan) []histories.Event {
	t.Helper()
	evs, err := Run(withStore(Config{Model: model.Orders{}, Strategy: strategy(t, s), Workload: w, Plan: p, Broker: BrokerLog}))
	require.NoError(t, err)
	return evs
}

// delivered lists the deliveries as "process:id@partition/offset".
func delivered(evs []histories.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Kind == histories.Deliver {
			var part, off, gen int
			_, err := fmt.Sscanf(ev.Detail, "partition %d, offset %d, generation %d", &part, &off, &gen)
			if err != nil {
				panic(err)
			}
			out = append(out, fmt.Sprintf("%s:%s@%d/%d", ev.Process, ev.Message.ID, part, off))
		}
	}
	return out
}

func details(evs []histories.Event, k histories.Kind) []string {
	var out []string
	for _, ev := range evs {
		if ev.Kind == k {
			out = append(out, ev.Detail)
		}
	}
	return out
}

func dump(evs []histories.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "%d %s %s #%d %s\n", ev.Step, ev.Process, ev.Kind, ev.Attempt, histories.Describe(ev))
	}
	return b.String()
}

// An ack commits the offset after its copy's: a later commit covers an
// earlier one that was lost, so the copy whose commit was lost is not
// delivered again (on the queue broker it would be).
func TestLogCommitIsAPrefix(t *testing.T) {
	evs := runLog(t, naive.Name, adds("o1", "o2"), faults.Plan{Faults: []faults.Fault{{Kind: faults.Redelivery, At: 0, Variant: faults.AckLost}}})
	require.Equal(t, []string{"consumer-1:m1@1/0", "consumer-1:m2@1/1"}, delivered(evs))
	require.Equal(t, []string{"commit partition 1 offset 1", "commit partition 1 offset 2"}, details(evs, histories.Ack))
	require.Len(t, details(evs, histories.AckLost), 1)
}

// A crashed consumer's partitions restart from the committed offset: the
// copy whose commit was lost is delivered again after the crash, though
// it was processed, and so is the one the crash hit (naive applies both
// twice).
func TestLogCrashRestartsFromTheCommittedOffset(t *testing.T) {
	evs := runLog(t, naive.Name, adds("o1", "o2"), faults.Plan{Faults: []faults.Fault{
		{Kind: faults.Redelivery, At: 0, Variant: faults.AckLost},
		{Kind: faults.Crash, Process: faults.Consumer, At: 1, Point: faults.BeforeAck},
	}})
	require.Equal(t, []string{"consumer-1:m1@1/0", "consumer-1:m2@1/1", "consumer-1:m1@1/0", "consumer-1:m2@1/1"}, delivered(evs))
	rebalances := details(evs, histories.Requeue)
	require.Len(t, rebalances, 3)
	require.Contains(t, rebalances[1], "rebalance to generation 2 (consumer-1 crashed)")
	require.Contains(t, rebalances[2], "rebalance to generation 3 (consumer-1 joins the group): partition 0 to consumer-1 from offset 0, partition 1 to consumer-1 from offset 0")
	last := evs[len(evs)-1]
	require.Equal(t, `{"confirmed":false,"lines":{"a":2}}`, last.State.String(), "m2 applied twice")
}

// When a member crashes, its partitions move to the members left, which
// read them from the committed offset; the crashed one rejoins only when
// it would own a partition with work.
func TestLogRebalanceOnCrashMovesPartitions(t *testing.T) {
	evs := runLog(t, naive.Name, adds("o3", "o1"), faults.Plan{Consumers: 2, Faults: []faults.Fault{
		{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: faults.AfterCommit},
	}})
	require.Equal(t, []string{"consumer-1:m1@0/0", "consumer-2:m1@0/0", "consumer-2:m2@1/0"}, delivered(evs))
	rebalances := details(evs, histories.Requeue)
	require.Equal(t, []string{
		"rebalance to generation 1 (the consumers join the group): partition 0 to consumer-1 from offset 0, partition 1 to consumer-2 from offset 0, partition 2 to consumer-1 from offset 0",
		"rebalance to generation 2 (consumer-1 crashed): partition 0 to consumer-2 from offset 0, partition 1 to consumer-2 from offset 0, partition 2 to consumer-2 from offset 0",
	}, rebalances)
}

// ackSpy records what Env.Ack returned.
type ackSpy struct {
	adapters.Env
	errs *[]error
}

func (a ackSpy) Ack() error {
	err := a.Env.Ack()
	*a.errs = append(*a.errs, err)
	return err
}

type spyHandler struct {
	adapters.Handler
	errs *[]error
}

func (h spyHandler) Handle(env adapters.Env, msg model.Message) error {
	return h.Handler.Handle(ackSpy{env, h.errs}, msg)
}

func spied(t *testing.T, name string, errs *[]error) adapters.Strategy {
	s := strategy(t, name)
	inner := s.NewHandler
	s.NewHandler = func() adapters.Handler { return spyHandler{inner(), errs} }
	return s
}

// When a member's session expires while it works, the coordinator expels
// it and its partition moves to the other member, from the committed
// offset: both process the copy, and the zombie's commit is rejected
// (UNKNOWN_MEMBER_ID, as franz-go's kfake and Kafka answer a member the
// group no longer has).
func TestLogLeaseExpiryExpelsAZombieWhoseCommitIsRejected(t *testing.T) {
	var errs []error
	evs, err := Run(withStore(Config{Model: model.Orders{}, Strategy: spied(t, naive.Name, &errs), Workload: adds("o3"), Broker: BrokerLog,
		Plan: faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Redelivery, At: 0, Variant: faults.LeaseExpired, Index: 1}}}}))
	require.NoError(t, err)
	require.Equal(t, []string{"consumer-1:m1@0/0", "consumer-2:m1@0/0"}, delivered(evs))
	rebalances := details(evs, histories.Requeue)
	require.Len(t, rebalances, 2)
	require.Contains(t, rebalances[1], "rebalance to generation 2 (the session of consumer-1 expired while it works on attempt 1, at its step 2): partition 0 to consumer-2 from offset 0")
	require.Equal(t, []string{"offset commit rejected: UNKNOWN_MEMBER_ID: consumer-1 is no longer a member of the group"}, details(evs, histories.Refused))
	require.Len(t, errs, 2)
	require.NoError(t, errs[0], "consumer-2's commit")
	require.ErrorIs(t, errs[1], ErrCommitRejected)
	require.ErrorIs(t, errs[1], ErrAckRefused)
	require.Equal(t, `{"confirmed":false,"lines":{"a":2}}`, evs[len(evs)-1].State.String(), "naive applied it twice")
}

// A member still in the group commits the copy it fetched before a
// rebalance (here, the other member's crash): it rejoined in the
// background, and the coordinator accepts its commit. The copy, whose
// partition stays with it, is not read again.
func TestLogCommitDuringARebalanceIsAccepted(t *testing.T) {
	var errs []error
	evs, err := Run(withStore(Config{Model: model.Orders{}, Strategy: spied(t, naive.Name, &errs), Workload: adds("o3", "o1"), Broker: BrokerLog,
		Plan: faults.Plan{Consumers: 2, Faults: []faults.Fault{
			{Kind: faults.Concurrent, At: 1},
			{Kind: faults.Crash, Process: faults.Consumer, At: 1, Point: faults.BeforeHandle},
		}}}))
	require.NoError(t, err)
	require.Equal(t, []string{"consumer-1:m1@0/0", "consumer-2:m2@1/0", "consumer-2:m2@1/0"}, delivered(evs), dump(evs))
	require.Contains(t, details(evs, histories.Requeue)[1], "rebalance to generation 2 (consumer-2 crashed)")
	require.Empty(t, details(evs, histories.Refused))
	require.Equal(t, []error{nil, nil}, errs)
}

// A partition assigned away from a member that still works on one of its
// copies is read by its new owner at once, from the committed offset: the
// member rejoins in the background, as franz-go's client does, and its
// commit is accepted. Here consumer-2 restarts while consumer-1 works on
// m1, and reads m1 again; naive applies it twice.
func TestLogPartitionMovesWhileItsHolderWorks(t *testing.T) {
	evs := runLog(t, naive.Name, adds("o1", "o2"), faults.Plan{Consumers: 2, Faults: []faults.Fault{
		{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: faults.BeforeHandle},
		{Kind: faults.Concurrent, At: 1},
	}})
	require.Equal(t, []string{"consumer-2:m1@1/0", "consumer-1:m1@1/0", "consumer-2:m1@1/0", "consumer-2:m2@1/1"}, delivered(evs), dump(evs))
	require.Contains(t, details(evs, histories.Requeue)[2], "rebalance to generation 3 (consumer-2 joins the group): partition 0 to consumer-1 from offset 0, partition 1 to consumer-2 from offset 0, partition 2 to consumer-1 from offset 0; consumer-1 rejoins while it works on attempt 2")
	require.Equal(t, []string{"commit partition 1 offset 1", "commit partition 1 offset 1", "commit partition 1 offset 2"}, details(evs, histories.Ack))
	require.Empty(t, details(evs, histories.Refused))
	require.Equal(t, `{"confirmed":false,"lines":{"a":2}}`, evs[len(evs)-2].State.String(), "m1 applied twice")
}

// The log has no per-message nack: a consumer that gives its copy back
// seeks to its offset, so it is the next copy of the partition again,
// before the ones after it (the queue broker puts it at the tail).
func TestLogNackSeeksBack(t *testing.T) {
	nacked := map[string]bool{}
	s := strategy(t, naive.Name)
	inner := s.NewHandler
	s.NewHandler = func() adapters.Handler { return nackFirst{inner(), nacked} }
	evs, err := Run(withStore(Config{Model: model.Orders{}, Strategy: s, Workload: adds("o1", "o2"), Broker: BrokerLog}))
	require.NoError(t, err)
	require.Equal(t, []string{"consumer-1:m1@1/0", "consumer-1:m1@1/0", "consumer-1:m2@1/1", "consumer-1:m2@1/1"}, delivered(evs))
	clear(nacked)
	queue, err := Run(withStore(Config{Model: model.Orders{}, Strategy: s, Workload: adds("o1", "o2")}))
	require.NoError(t, err)
	var order []string
	for _, ev := range queue {
		if ev.Kind == histories.Deliver {
			order = append(order, ev.Message.ID)
		}
	}
	require.Equal(t, []string{"m1", "m2", "m1", "m2"}, order)
}

// nackFirst nacks each message the first time it sees it.
type nackFirst struct {
	adapters.Handler
	nacked map[string]bool
}

func (h nackFirst) Handle(env adapters.Env, msg model.Message) error {
	if !h.nacked[msg.ID] {
		h.nacked[msg.ID] = true
		return env.Nack("not yet")
	}
	return h.Handler.Handle(env, msg)
}

// A broker duplicate on the log is a lost fetch position: the partition is
// read again from its committed offset, the copy in hand included.
func TestLogDuplicateRereadsFromTheCommittedOffset(t *testing.T) {
	evs := runLog(t, naive.Name, adds("o1", "o2"), faults.Plan{Faults: []faults.Fault{
		{Kind: faults.Redelivery, At: 0, Variant: faults.AckLost},
		{Kind: faults.Redelivery, At: 1, Variant: faults.Duplicate},
	}})
	require.Equal(t, []string{"consumer-1:m1@1/0", "consumer-1:m2@1/1", "consumer-1:m1@1/0", "consumer-1:m2@1/1"}, delivered(evs))
	require.Contains(t, details(evs, histories.Requeue), "fetch position lost: partition 1 is read again from offset 0, m2 included")
}

var deliverDetail = regexp.MustCompile(`^partition (\d+), offset (\d+), generation (\d+)`)

// Whatever the faults, a partition is read in offset order: each copy is
// the one after the partition's previous copy, unless the partition was
// rewound in between (a rebalance, a nack, a lost fetch position); an
// offset always holds the same copy, of an aggregate that hashes to its
// partition; and only the partition's owner in the current generation
// takes copies from it.
func TestLogKeepsPartitionOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		name := rapid.SampledFrom([]string{naive.Name, outbox.Name}).Draw(t, "strategy")
		s := strategy(t, name)
		w := model.Orders{}.Workload(6).Draw(t, "workload")
		p := faults.Generator(faults.Options{Kinds: faults.AllKinds, MaxFaults: 4, Deliveries: 2 * len(w), Dispatcher: s.NewDispatcher != nil, MaxPublishes: 2}).Draw(t, "plan")
		evs, err := Run(withStore(Config{Model: model.Orders{}, Strategy: s, Workload: w, Plan: p, Broker: BrokerLog}))
		require.NoError(t, err)
		next := map[int]int{}     // partition -> offset expected next, absent after a rewind
		at := map[[2]int]string{} // (partition, offset) -> message id
		generation := 0
		for _, ev := range evs {
			switch {
			case ev.Kind == histories.Nack || ev.Kind == histories.Requeue:
				clear(next)
				if g, ok := strings.CutPrefix(ev.Detail, "rebalance to generation "); ok {
					n, err := strconv.Atoi(g[:strings.IndexByte(g, ' ')])
					require.NoError(t, err)
					require.Equal(t, generation+1, n)
					generation = n
				}
			case ev.Kind == histories.Deliver:
				m := deliverDetail.FindStringSubmatch(ev.Detail)
				require.NotNil(t, m, ev.Detail)
				part, _ := strconv.Atoi(m[1])
				off, _ := strconv.Atoi(m[2])
				gen, _ := strconv.Atoi(m[3])
				require.Equal(t, generation, gen)
				require.Equal(t, Partition(ev.Message.Aggregate), part)
				if want, ok := next[part]; ok {
					require.Equal(t, want, off, "partition %d read out of order", part)
				}
				next[part] = off + 1
				if id, ok := at[[2]int{part, off}]; ok {
					require.Equal(t, id, ev.Message.ID)
				}
				at[[2]int{part, off}] = ev.Message.ID
			}
		}
	})
}

func TestLogRunIsDeterministic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		name := rapid.SampledFrom([]string{naive.Name, outbox.Name}).Draw(t, "strategy")
		s := strategy(t, name)
		w := model.Orders{}.Workload(6).Draw(t, "workload")
		p := faults.Generator(faults.Options{Kinds: faults.AllKinds, MaxFaults: 3, Deliveries: 2 * len(w), Dispatcher: s.NewDispatcher != nil, MaxPublishes: 2}).Draw(t, "plan")
		cfg := withStore(Config{Model: model.Orders{}, Strategy: s, Workload: w, Plan: p, Broker: BrokerLog})
		a, err := Run(cfg)
		require.NoError(t, err)
		b, err := Run(withStore(cfg))
		require.NoError(t, err)
		ha, hb := histories.History{Events: a}, histories.History{Events: b}
		require.Equal(t, ha.Hash(), hb.Hash())
	})
}

func TestLogBrokerRefusesWhatItCannotRun(t *testing.T) {
	base := Config{Model: model.Orders{}, Strategy: strategy(t, naive.Name), Workload: oneAdd, Broker: BrokerLog}
	for _, cfg := range []Config{
		func(c Config) Config { c.FreeRunning = true; return c }(base),
		func(c Config) Config { c.Format12 = true; return c }(base),
	} {
		_, err := Run(withStore(cfg))
		require.ErrorIs(t, err, errLogConfig)
	}
	base.Broker = "kafka"
	_, err := Run(withStore(base))
	require.ErrorContains(t, err, `unknown broker "kafka"`)
	require.False(t, errors.Is(err, ErrInfrastructure))
}
