package oncecheck

import (
	"testing"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/memstore"
	"github.com/oncecheck/oncecheck/checkers"
	"github.com/oncecheck/oncecheck/model"
)

// BenchmarkExecute measures one run (simulation plus check) per strategy
// with every fault kind, beside BenchmarkBare: the same workloads handled
// by the same handler on a plain store with no harness. Their ratio is the
// harness's cost.
func BenchmarkExecute(b *testing.B) {
	for _, name := range []string{"naive", "dedup", "outbox"} {
		b.Run(name, func(b *testing.B) {
			tester, err := New(Config{Strategy: name})
			if err != nil {
				b.Fatal(err)
			}
			cases := make([]Case, 64)
			for i := range cases {
				cases[i] = tester.Generate(uint64(i))
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, _, err := tester.Execute(cases[i%len(cases)], 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBare applies the same workloads with the naive handler's logic
// directly on the in-memory store: no simulation, no history, no check.
func BenchmarkBare(b *testing.B) {
	tester, err := New(Config{Strategy: "naive"})
	if err != nil {
		b.Fatal(err)
	}
	m := model.Orders{}
	cases := make([]Case, 64)
	for i := range cases {
		cases[i] = tester.Generate(uint64(i))
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		store := memstore.New()
		for _, msg := range cases[i%len(cases)].Workload {
			tx := store.Begin()
			st, err := adapters.LoadState(tx, m, msg.Aggregate)
			if err != nil {
				b.Fatal(err)
			}
			next, _, err := m.Apply(st, msg)
			if err != nil {
				b.Fatal(err)
			}
			if err := adapters.SaveState(tx, msg.Aggregate, next); err != nil {
				b.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkCheck measures the exactly-once check of one recorded history.
func BenchmarkCheck(b *testing.B) {
	tester, err := New(Config{Strategy: "outbox"})
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
