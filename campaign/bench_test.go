package campaign

import (
	"context"
	"flag"
	"runtime"
	"testing"
	"time"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/memcache"
	"github.com/oncecheck/oncecheck/adapters/memstore"
	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
	"github.com/oncecheck/oncecheck/sim"
)

var campaign = flag.Int("oncecheck.campaign", 100_000, "runs of BenchmarkCampaignMemory")

// benchCases generates cases of 20 logical messages with every fault kind.
func benchCases(b *testing.B, tester *Tester, n int) []Case {
	var cases []Case
	for seed := uint64(0); len(cases) < n; seed++ {
		c := tester.Generate(seed)
		if len(c.Workload) == 20 {
			cases = append(cases, c)
		}
		if seed > 100_000 {
			b.Fatal("too few workloads of 20 messages")
		}
	}
	return cases
}

// BenchmarkHarness measures one run as a campaign makes it (simulation,
// history, and the check's verdict; a campaign explains only the run that
// fails, once) per strategy with every fault kind and 20 logical messages,
// against a bare
// loop: the same handler calls (every delivered copy, in the order the run
// delivered them, then the dispatcher until idle) made directly on an
// in-memory store, with no simulation, no faults, no history and no check.
// The two alternate, run by run, so that the machine's drift weighs on both
// alike; metrics: harness-µs/run, bare-µs/run and their ratio.
func BenchmarkHarness(b *testing.B) {
	for _, name := range builtin.StrategyNames() {
		b.Run(name, func(b *testing.B) {
			tester, err := New(Config{Strategy: strat(name), MaxMessages: 20})
			if err != nil {
				b.Fatal(err)
			}
			cases := benchCases(b, tester, 16)
			deliveries := make([][]model.Message, len(cases))
			for i, c := range cases {
				h, _, _ := tester.Execute(c, 0)
				for _, ev := range h.Events {
					if ev.Kind == histories.Deliver {
						deliveries[i] = append(deliveries[i], *ev.Message)
					}
				}
			}
			var harness, bare time.Duration
			for i := 0; b.Loop(); i++ {
				start := time.Now()
				h, _, err := tester.execute(cases[i%len(cases)], 0, true)
				if err != nil {
					b.Fatal(err)
				}
				tester.recycle(h) // as a campaign does with a history it drops
				mid := time.Now()
				bareRun(tester.cfg.Strategy, tester.model, deliveries[i%len(deliveries)])
				harness, bare = harness+mid.Sub(start), bare+time.Since(mid)
			}
			b.ReportMetric(float64(harness.Microseconds())/float64(b.N), "harness-µs/run")
			b.ReportMetric(float64(bare.Microseconds())/float64(b.N), "bare-µs/run")
			b.ReportMetric(float64(harness)/float64(bare), "harness/bare")
		})
	}
}

// bareEnv is an Env without a harness: transactions straight on the store,
// publishes into a slice, acks ignored.
type bareEnv struct {
	m         model.Model
	store     *memstore.Store
	cache     *memcache.Store
	published []model.Message
	ids       int
}

func (e *bareEnv) Model() model.Model          { return e.m }
func (e *bareEnv) Begin() (adapters.Tx, error) { return e.store.Begin(), nil }
func (e *bareEnv) BeginTx(o adapters.TxOptions) (adapters.Tx, error) {
	return e.store.BeginTx(o), nil
}
func (e *bareEnv) Publish(msgs ...model.Message) error {
	e.published = append(e.published, msgs...)
	return nil
}
func (e *bareEnv) Ack() error        { return nil }
func (e *bareEnv) Nack(string) error { return nil }
func (e *bareEnv) NewID() string     { e.ids++; return "id" }
func (e *bareEnv) Point(string)      {}
func (e *bareEnv) Now() time.Time    { return sim.Epoch() }
func (e *bareEnv) Cache() adapters.Cache {
	return e.cache.At(sim.Epoch())
}
func (e *bareEnv) RunID() string { return "bare" }

func bareRun(s adapters.Strategy, m model.Model, deliveries []model.Message) {
	env := &bareEnv{m: m, store: memstore.New(), cache: memcache.New()}
	h := s.NewHandler()
	for _, msg := range deliveries {
		_ = h.Handle(env, msg)
	}
	if s.NewDispatcher != nil {
		d := s.NewDispatcher()
		for busy := true; busy; {
			busy, _ = d.Pass(env)
		}
	}
}

// BenchmarkParallelRuns measures a campaign's rate (runs/s) with one and
// with two workers. The two alternate, campaign by campaign, so that the
// machine's drift weighs on both alike; metrics: runs/s of each and the
// speed-up.
func BenchmarkParallelRuns(b *testing.B) {
	tester, err := New(Config{Strategy: strat("outbox"), Faults: []faults.Kind{faults.Crash, faults.Redelivery}})
	if err != nil {
		b.Fatal(err)
	}
	var elapsed [3]time.Duration
	runs := 0
	for b.Loop() {
		for _, p := range []int{1, 2} {
			start := time.Now()
			rep, err := tester.Search(context.Background(), SearchOptions{Runs: 500, Seed: 1, Out: b.TempDir(), Parallel: p})
			if err != nil || rep.Runs != 500 {
				b.Fatalf("%v after %d runs", err, rep.Runs)
			}
			elapsed[p] += time.Since(start)
		}
		runs += 500
	}
	one, two := float64(runs)/elapsed[1].Seconds(), float64(runs)/elapsed[2].Seconds()
	b.ReportMetric(one, "runs/s-parallel-1")
	b.ReportMetric(two, "runs/s-parallel-2")
	b.ReportMetric(two/one, "speed-up")
}

// BenchmarkCampaignMemory runs one long campaign (-oncecheck.campaign runs,
// 100,000 by default; 1,000,000 for the figure in docs/benchmarks.md) and
// reports the live heap after a collection at the first and the last tenth
// of it: a flat heap keeps nothing per run.
func BenchmarkCampaignMemory(b *testing.B) {
	tester, err := New(Config{Strategy: strat("outbox"), Faults: []faults.Kind{faults.Crash, faults.Redelivery}})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		var first, last uint64
		heap := func() uint64 {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return ms.HeapAlloc
		}
		n := *campaign
		rep, err := tester.Search(context.Background(), SearchOptions{Runs: n, Seed: 1, Out: b.TempDir(), Parallel: 2,
			Progress: func(done, total int) {
				switch done {
				case total / 10:
					first = heap()
				case total - total/10:
					last = heap()
				}
			}})
		if err != nil || rep.Runs != n {
			b.Fatalf("%v after %d runs", err, rep.Runs)
		}
		b.ReportMetric(float64(first)/(1<<20), "MiB-heap-at-10%")
		b.ReportMetric(float64(last)/(1<<20), "MiB-heap-at-90%")
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "runs/s")
	}
}

// BenchmarkCheckOneRun measures the check of one recorded history.
func BenchmarkCheckOneRun(b *testing.B) {
	tester, err := New(Config{Strategy: strat("outbox")})
	if err != nil {
		b.Fatal(err)
	}
	h, _, err := tester.Execute(tester.Generate(1), 1)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := checkers.Check(h, model.Orders{}, checkers.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnsafeCells measures, for every cell of expected/matrix.json
// that expects a violation, the runs and the wall time to the first
// violation and the time shrinking took (one campaign of up to 500 runs,
// seed 1, one worker, 10 s of shrinking at most). Run it with -benchtime 1x.
func BenchmarkUnsafeCells(b *testing.B) {
	want, err := LoadExpectedMatrix("../expected/matrix.json")
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range builtin.ModelNames() {
		for _, s := range builtin.StrategyNames() {
			for _, col := range MatrixColumns() {
				if e := want[m][s][col]; e == "pass" || e == "n/a" || e == "" {
					continue
				}
				kinds, err := faults.ParseKinds(col)
				if err != nil {
					b.Fatal(err)
				}
				b.Run(m+"/"+s+"/"+col, func(b *testing.B) {
					tester, err := New(Config{Model: mdl(m), Strategy: strat(s), Faults: kinds})
					if err != nil {
						b.Fatal(err)
					}
					var rep Report
					for b.Loop() {
						rep, err = tester.Search(context.Background(), SearchOptions{Runs: 500, Seed: 1, Out: b.TempDir(), ShrinkTime: 10 * time.Second})
						if err != nil || rep.Verdict != histories.Violation {
							b.Fatalf("expected a violation within 500 runs, got %s (%v)", rep.Verdict, err)
						}
					}
					b.ReportMetric(float64(rep.RunsToFailure), "runs-to-failure")
					b.ReportMetric(float64(rep.TimeToFailure.Microseconds())/1000, "ms-to-failure")
					b.ReportMetric(float64(rep.ShrinkTime.Microseconds())/1000, "ms-shrink")
				})
			}
		}
	}
}
