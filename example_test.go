package oncecheck_test

import (
	"fmt"
	"os"
	"strings"

	"github.com/oncecheck/oncecheck"
	"github.com/oncecheck/oncecheck/adapters/dedup"
	"github.com/oncecheck/oncecheck/adapters/reservation"
	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// printTB is a TB that prints the first line of what Verify reports, as a
// test log shows it. In a test, pass the test's *testing.T.
type printTB struct{}

func (printTB) Helper()      {}
func (printTB) Name() string { return "TestDedupIsExactlyOnce" }
func (printTB) Logf(format string, args ...any) {
	fmt.Println("log:", firstLine(fmt.Sprintf(format, args...)))
}
func (printTB) Errorf(format string, args ...any) {
	fmt.Println("error:", firstLine(fmt.Sprintf(format, args...)))
}
func (printTB) Skipf(format string, args ...any) {
	fmt.Println("skip:", firstLine(fmt.Sprintf(format, args...)))
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if i := strings.Index(s, " ("); i > 0 {
		s = s[:i] // the seed and the time taken, which vary
	}
	return s
}

// Verify in a test: the classic idempotent consumer, under crashes, is
// caught losing a message; the counterexample is shrunk and saved in Out.
func ExampleVerify() {
	out, _ := os.MkdirTemp("", "oncecheck-example")
	defer os.RemoveAll(out)
	oncecheck.Verify(printTB{}, oncecheck.Spec{
		Model:    model.Orders{},
		Strategy: dedup.Strategy(),
		Faults:   []faults.Kind{faults.Crash},
		Seed:     1,
		Out:      out,
	})
	// Output:
	// error: oncecheck: dedup is not exactly-once: lost
}

// A Spec for a handler that survives every fault: Verify logs a pass.
func ExampleSpec() {
	oncecheck.Verify(printTB{}, oncecheck.Spec{
		Model:    model.Orders{},
		Strategy: reservation.Strategy(),
		Runs:     50,
		Seed:     1,
	})
	// Output:
	// log: oncecheck: reservation is exactly-once over 50 runs
}

// With $ONCECHECK_REPLAY naming a saved history, Verify replays it
// instead of searching; $ONCECHECK_SEED sets the seed of a search.
func ExampleReplayEnv() {
	os.Setenv(oncecheck.ReplayEnv, "histories/testdata/corpus/dedup-orders-crash-lost-mem-3.jsonl")
	defer os.Unsetenv(oncecheck.ReplayEnv)
	oncecheck.Verify(printTB{}, oncecheck.Spec{Model: model.Orders{}, Strategy: dedup.Strategy()})
	// Output:
	// log: oncecheck: replayed histories/testdata/corpus/dedup-orders-crash-lost-mem-3.jsonl
	// error: oncecheck: dedup is not exactly-once: lost
}

// $ONCECHECK_SEED sets the seed of Verify's search, to reproduce a
// campaign another machine ran.
func ExampleSeedEnv() {
	os.Setenv(oncecheck.SeedEnv, "1")
	defer os.Unsetenv(oncecheck.SeedEnv)
	oncecheck.Verify(printTB{}, oncecheck.Spec{Model: model.Orders{}, Strategy: reservation.Strategy(), Runs: 20})
	// Output:
	// log: oncecheck: reservation is exactly-once over 20 runs
}

// Check a saved history offline.
func ExampleCheck() {
	h, err := histories.Load("histories/testdata/corpus/publish-first-orders-crash-ghost-mem-15.jsonl")
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := oncecheck.Check(h, oncecheck.CheckOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Verdict, res.Anomalies)
	// Output:
	// violation [ghost]
}

// Check a history file without holding it in memory.
func ExampleCheckFile() {
	f, err := histories.Open("histories/testdata/corpus/dedup-orders-crash-lost-mem-3.jsonl")
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := oncecheck.CheckFile(f, oncecheck.CheckOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Verdict, res.Anomalies)
	// Output:
	// violation [lost]
}

// Check events that never were a file: any histories.Stream, here a
// history built in memory, with the stricter downstream policy.
func ExampleCheckStream() {
	h, err := histories.Load("histories/testdata/corpus/outbox-orders-crash+redelivery-pass-mem-11.jsonl")
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := oncecheck.CheckStream(h.Header, h, oncecheck.CheckOptions{Downstream: "none"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Verdict)
	// Output:
	// pass
}

// Replay a saved counterexample on the strategy that failed, then on
// another: the outbox survives what the dedup strategy did not.
func ExampleReplay() {
	h, err := histories.Load("histories/testdata/corpus/dedup-orders-crash-lost-mem-3.jsonl")
	if err != nil {
		fmt.Println(err)
		return
	}
	replayed, res, err := oncecheck.Replay(h, oncecheck.ReplayOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("same events:", histories.FirstDifference(h.Events, replayed.Events) == 0, res.Verdict)
	_, res, err = oncecheck.Replay(h, oncecheck.ReplayOptions{Strategy: "outbox"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("on outbox:", res.Verdict)
	// Output:
	// same events: true violation
	// on outbox: pass
}

// A model or a strategy of one's own is found by name through a catalogue:
// the built-ins plus one's own.
func ExampleCheckOptions() {
	h, err := histories.Load("histories/testdata/corpus/dedup-orders-crash-lost-mem-3.jsonl")
	if err != nil {
		fmt.Println(err)
		return
	}
	h.Header.Model = "my-orders"
	_, err = oncecheck.Check(h, oncecheck.CheckOptions{})
	fmt.Println(err)
	cat := catalogue.Builtin().WithModels(myOrders{})
	res, err := oncecheck.Check(h, oncecheck.CheckOptions{Catalogue: cat})
	fmt.Println(res.Verdict, err)
	// Output:
	// malformed history: unknown model "my-orders" (known: [orders accounts profiles])
	// violation <nil>
}

// A replay runs where the catalogue says: the history's strategy and
// backend by default, or others by name.
func ExampleReplayOptions() {
	h, err := histories.Load("histories/testdata/corpus/dedup-orders-crash-lost-mem-3.jsonl")
	if err != nil {
		fmt.Println(err)
		return
	}
	_, _, err = oncecheck.Replay(h, oncecheck.ReplayOptions{Backend: "pg"})
	fmt.Println(err)
	// Output:
	// unknown backend "pg" (known: [mem])
}

// myOrders is the orders model under a name of one's own.
type myOrders struct{ model.Orders }

func (myOrders) Name() string { return "my-orders" }
