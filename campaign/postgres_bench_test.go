package campaign

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/pgstore"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/internal/pgtest"
	"github.com/oncecheck/oncecheck/model"
)

// BenchmarkPostgresTransactions compares, in one run and at the same
// concurrency (one process at a time), the transaction rate of the harness
// on the pg backend (the naive strategy on generated workloads, no faults:
// simulation, history, check) with a bare loop that issues the same
// transactions through the same store without the harness. Metric: tx/s.
func BenchmarkPostgresTransactions(b *testing.B) {
	dsn := pgtest.DSN(b)
	tester, err := New(Config{Strategy: strat("naive"), Backend: pgstore.Backend{DSN: dsn}, Faults: []faults.Kind{faults.Crash}})
	if err != nil {
		b.Fatal(err)
	}
	defer tester.Close()
	cases := make([]Case, 32)
	for i := range cases {
		cases[i] = tester.Generate(uint64(i))
		cases[i].Plan = faults.Plan{}
	}
	b.Run("harness", func(b *testing.B) {
		commits := 0
		for i := 0; b.Loop(); i++ {
			h, _, err := tester.Execute(cases[i%len(cases)], 0)
			if err != nil {
				b.Fatal(err)
			}
			for _, ev := range h.Events {
				if ev.Kind == histories.Commit {
					commits++
				}
			}
		}
		b.ReportMetric(float64(commits)/b.Elapsed().Seconds(), "tx/s")
	})
	b.Run("bare", func(b *testing.B) {
		store, err := pgstore.Open(context.Background(), dsn, pgstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer store.Close()
		m := model.Orders{}
		commits := 0
		for i := 0; b.Loop(); i++ {
			if err := store.Reset(); err != nil {
				b.Fatal(err)
			}
			for _, msg := range cases[i%len(cases)].Workload {
				tx, err := store.Begin(adapters.TxOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := strategykit.Apply(tx, m, msg); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
				commits++
			}
		}
		b.ReportMetric(float64(commits)/b.Elapsed().Seconds(), "tx/s")
	})
	// pgbench issuing the bare loop's statements, one client: the rate
	// of the server itself, without Go or pgx.
	b.Run("pgbench", func(b *testing.B) {
		store, err := pgstore.Open(context.Background(), dsn, pgstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer store.Close()
		script := filepath.Join(b.TempDir(), "tx.sql")
		sql := fmt.Sprintf(`BEGIN ISOLATION LEVEL REPEATABLE READ;
SET LOCAL lock_timeout = '100ms';
SELECT 1;
SELECT state::text FROM %[1]s WHERE aggregate_id = 'o1' FOR UPDATE;
INSERT INTO %[1]s (aggregate_id, state) VALUES ('o1', '{"confirmed":false,"lines":{"a":1}}'::text::text) ON CONFLICT (aggregate_id) DO UPDATE SET state = excluded.state;
COMMIT;
`, store.Table(strategykit.StateTable))
		if err := os.WriteFile(script, []byte(sql), 0o644); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		out, err := exec.Command("pgbench", "-n", "-c", "1", "-t", strconv.Itoa(b.N), "-f", script, dsn).CombinedOutput()
		if err != nil {
			b.Fatalf("pgbench: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`tps = ([0-9.]+)`).FindSubmatch(out)
		if m == nil {
			b.Fatalf("no tps in pgbench's output:\n%s", out)
		}
		tps, _ := strconv.ParseFloat(string(m[1]), 64)
		b.ReportMetric(tps, "tx/s")
	})
}
