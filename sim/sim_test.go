package sim

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/dedupmemory"
	"github.com/oncecheck/oncecheck/adapters/memstore"
	"github.com/oncecheck/oncecheck/adapters/naive"
	"github.com/oncecheck/oncecheck/adapters/outbox"
	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

func strategy(t require.TestingT, name string) adapters.Strategy {
	s, err := catalogue.Builtin().Strategy(name)
	require.NoError(t, err)
	return s
}

// withStore gives cfg a fresh in-memory store.
func withStore(cfg Config) Config {
	s, err := memstore.Backend{}.Open(adapters.StoreOptions{})
	if err != nil {
		panic(err) // the in-memory backend opens any store without SQL
	}
	cfg.Store = s
	return cfg
}

func kinds(evs []histories.Event) []histories.Kind {
	out := make([]histories.Kind, len(evs))
	for i, e := range evs {
		out[i] = e.Kind
	}
	return out
}

var oneAdd = model.Workload{{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"sku":"a","qty":1}`)}}.Number()

func TestRunIsDeterministic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		name := rapid.SampledFrom([]string{naive.Name, outbox.Name}).Draw(t, "strategy")
		s := strategy(t, name)
		w := model.Orders{}.Workload(6).Draw(t, "workload")
		p := faults.Generator(faults.Options{Kinds: faults.AllKinds, MaxFaults: 3, Deliveries: 2 * len(w), Dispatcher: s.NewDispatcher != nil, MaxPublishes: 2}).Draw(t, "plan")
		cfg := withStore(Config{Model: model.Orders{}, Strategy: s, Workload: w, Plan: p})
		a, err := Run(cfg)
		require.NoError(t, err)
		b, err := Run(withStore(cfg))
		require.NoError(t, err)
		ha, hb := histories.History{Events: a}, histories.History{Events: b}
		require.Equal(t, ha.Hash(), hb.Hash())
	})
}

func TestCrashAfterCommitRedelivers(t *testing.T) {
	plan := faults.Plan{Faults: []faults.Fault{{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: faults.AfterCommit}}}
	evs, err := Run(withStore(Config{Model: model.Orders{}, Strategy: strategy(t, naive.Name), Workload: oneAdd, Plan: plan}))
	require.NoError(t, err)
	require.Equal(t, []histories.Kind{
		histories.Send,
		histories.Deliver, histories.Begin, histories.Write, histories.Commit, histories.Crash,
		histories.Drain, histories.Restart,
		histories.Deliver, histories.Begin, histories.Write, histories.Commit, histories.Publish, histories.Ack, histories.Done,
		histories.Observe,
	}, kinds(evs))
	require.Equal(t, `{"confirmed":false,"lines":{"a":2}}`, evs[len(evs)-1].State.String(), "naive applied the message twice")
	require.Equal(t, `ItemAdded{"qty":2,"sku":"a"}`, evs[12].Message.Output().String(), "the second application sees the first")
}

func TestCrashBeforeCommitAbortsTheTransaction(t *testing.T) {
	plan := faults.Plan{Faults: []faults.Fault{{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: faults.BeforeCommit}}}
	evs, err := Run(withStore(Config{Model: model.Orders{}, Strategy: strategy(t, naive.Name), Workload: oneAdd, Plan: plan}))
	require.NoError(t, err)
	require.Equal(t, histories.Crash, evs[4].Kind)
	require.Equal(t, histories.Abort, evs[5].Kind)
	require.Equal(t, "process crashed", evs[5].Detail)
	require.Equal(t, `{"confirmed":false,"lines":{"a":1}}`, evs[len(evs)-1].State.String(), "the aborted write left no trace")
}

func TestDispatcherCrashRepublishesTheSameID(t *testing.T) {
	plan := faults.Plan{Faults: []faults.Fault{{Kind: faults.Crash, Process: faults.Dispatcher, At: 0, Point: faults.AfterPublish, Index: 0}}}
	evs, err := Run(withStore(Config{Model: model.Orders{}, Strategy: strategy(t, outbox.Name), Workload: oneAdd, Plan: plan}))
	require.NoError(t, err)
	var ids []string
	for _, e := range evs {
		if e.Kind == histories.Publish {
			ids = append(ids, e.Message.ID)
		}
	}
	require.Equal(t, []string{"m1/out1", "m1/out1", "m1/out2"}, ids)
}

type nackForever struct{}

func (nackForever) Handle(env adapters.Env, _ model.Message) error { return env.Nack("not today") }
func (nackForever) Observe(adapters.Tx, model.Model, string) (model.State, error) {
	return nil, nil
}

func TestUndrainableRunIsStuck(t *testing.T) {
	s := adapters.Strategy{Name: "nack-forever", NewHandler: func() adapters.Handler { return nackForever{} }}
	evs, err := Run(withStore(Config{Model: model.Orders{}, Strategy: s, Workload: oneAdd, MaxDeliveries: 5}))
	require.NoError(t, err)
	stuck := evs[len(evs)-2]
	require.Equal(t, histories.Undrained, stuck.Kind)
	require.Contains(t, stuck.Detail, "after 5 deliveries")
	require.Contains(t, stuck.Detail, "(m1)")
	require.Equal(t, histories.Observe, evs[len(evs)-1].Kind, "what did drain is observed (format 1.3)")

	evs, err = Run(withStore(Config{Model: model.Orders{}, Strategy: s, Workload: oneAdd, MaxDeliveries: 5, Format12: true}))
	require.NoError(t, err)
	require.Equal(t, histories.Undrained, evs[len(evs)-1].Kind, "format 1.2: a stuck run observed nothing")
}

type panics struct{ nackForever }

func (panics) Handle(adapters.Env, model.Message) error { panic("boom") }

func TestAdapterPanicIsAnInfrastructureFailure(t *testing.T) {
	s := adapters.Strategy{Name: "panics", NewHandler: func() adapters.Handler { return panics{} }}
	_, err := Run(withStore(Config{Model: model.Orders{}, Strategy: s, Workload: oneAdd}))
	require.True(t, errors.Is(err, ErrInfrastructure))
	require.ErrorContains(t, err, "panics panicked in attempt 1: boom")
}

func TestAdapterNamedCrashPoint(t *testing.T) {
	s := strategy(t, dedupmemory.Name)
	require.Equal(t, []faults.Point{"before-remember"}, s.Points)
	plan := faults.Plan{Faults: []faults.Fault{{Kind: faults.Crash, Process: faults.Consumer, At: 0, Point: "before-remember"}}}
	evs, err := Run(withStore(Config{Model: model.Orders{}, Strategy: s, Workload: oneAdd, Plan: plan}))
	require.NoError(t, err)
	var crash histories.Event
	for _, e := range evs {
		if e.Kind == histories.Crash {
			crash = e
		}
	}
	require.Equal(t, "before-remember", crash.Point)
	require.Equal(t, `{"confirmed":false,"lines":{"a":2}}`, evs[len(evs)-1].State.String(), "the restarted process forgot the id")
}

func TestCompetingConsumersInterleave(t *testing.T) {
	// Preempt consumer-1 right after its write (boundaries 0, 1, 2, 3 are
	// before-handle, after-begin, after the read, after-write): consumer-2
	// takes the next message, finds no state row for the order (consumer-1's
	// is not committed), and its insert of one waits for consumer-1's lock;
	// consumer-1 commits, consumer-2 wakes to find the row there: a
	// conflict, so it nacks, and the retry succeeds.
	w := model.Workload{
		{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"sku":"a","qty":1}`)},
		{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"sku":"b","qty":1}`)},
	}.Number()
	plan := faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Concurrent, At: 3}}}
	evs, err := Run(withStore(Config{Model: model.Orders{}, Strategy: strategy(t, naive.Name), Workload: w, Plan: plan, ReadsPreempt: true}))
	require.NoError(t, err)
	var seq []string
	for _, e := range evs {
		switch e.Kind {
		case histories.Deliver, histories.Commit, histories.Abort, histories.Switch, histories.Nack, histories.Wait, histories.Wake:
			seq = append(seq, e.Process+" "+string(e.Kind))
		}
	}
	require.Equal(t, []string{
		"consumer-1 deliver", "consumer-1 switch", "consumer-2 deliver", "consumer-2 wait", "consumer-1 commit",
		"consumer-2 wake", "consumer-2 abort", "consumer-2 nack", "consumer-1 deliver", "consumer-1 commit",
	}, seq)
	require.Equal(t, `{"confirmed":false,"lines":{"a":1,"b":1}}`, evs[len(evs)-1].State.String())
}

func TestDispatcherPassThatMissedACommitRunsAgain(t *testing.T) {
	// The dispatcher's pass begins (its snapshot sees no outbox row), is
	// preempted, the consumer commits m1 with its outbox rows, and the pass
	// ends finding nothing: another pass must still publish them.
	plan := faults.Plan{Consumers: 2, Faults: []faults.Fault{{Kind: faults.Concurrent, At: 0}}}
	// (The exhaustive mode found this shape: the third message is the one
	// whose rows the pass missed.)
	w := model.Workload{
		{Aggregate: "o1", Type: model.RemoveItem, Payload: []byte(`{"sku":"a"}`)},
		{Aggregate: "o1", Type: model.RemoveItem, Payload: []byte(`{"sku":"a"}`)},
		{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)},
	}.Number()
	s := strategy(t, outbox.Name)
	// Find the boundary of the dispatcher's first Begin by exploring.
	_, opps, err := Explore(withStore(Config{Model: model.Orders{}, Strategy: s, Workload: w, Plan: plan, Explore: []faults.Kind{faults.Concurrent}}))
	require.NoError(t, err)
	published := func(evs []histories.Event) int {
		n := 0
		for _, e := range evs {
			if e.Kind == histories.Publish {
				n++
			}
		}
		return n
	}
	for _, op := range opps {
		p := faults.Plan{Consumers: 2, Faults: []faults.Fault{op.Fault}}
		evs, err := Run(withStore(Config{Model: model.Orders{}, Strategy: s, Workload: w, Plan: p}))
		require.NoError(t, err)
		require.GreaterOrEqual(t, published(evs), 2, "preempting at boundary %d left outbox rows unpublished", op.Fault.At)
	}
}
