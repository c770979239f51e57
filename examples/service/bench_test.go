package main

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/service"
)

// BenchmarkServiceRuns runs the correct example with two consumers and
// every fault kind, seed after seed, on 1, 2 and 4 runners at once (each
// with its own embedded broker), and reports runs per second of the
// campaign and the share of each run spent waiting for its schema, in
// setup (streams, sends), process start, work, drain, teardown and check
// (service.Runner.Timings). Every run must pass.
func BenchmarkServiceRuns(b *testing.B) {
	for _, n := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("parallel=%d", n), func(b *testing.B) {
			runners, err := service.NewRunners(benchConfig(b, ""), n)
			require.NoError(b, err)
			b.Cleanup(func() { service.CloseRunners(runners) })
			ctx := context.Background()
			b.ResetTimer()
			start := time.Now()
			f, err := service.RunSeeds(ctx, runners, 20000, b.N)
			elapsed := time.Since(start)
			b.StopTimer()
			require.NoError(b, err)
			if f != nil {
				require.Failf(b, "a run of the correct service failed", "seed %d: %v\n%s", f.Seed, f.Result.Findings, f.History.Timeline())
			}
			reportTimings(b, service.SumTimings(runners), elapsed)
		})
	}
}

// benchConfig is the configuration of a benchmark: every fault kind, and
// the quiet and settle periods of $SERVICE_QUIET and $SERVICE_SETTLE (a
// duration; a settle of 0 waits for the quiet period alone) when they
// are set, to compare verdicts across drains.
func benchConfig(b *testing.B, bug string) service.Config {
	cfg := config(b, bug, service.Kinds...)
	if q := os.Getenv("SERVICE_QUIET"); q != "" {
		d, err := time.ParseDuration(q)
		require.NoError(b, err, "$SERVICE_QUIET")
		cfg.Quiet = d
	}
	if q := os.Getenv("SERVICE_SETTLE"); q != "" {
		d, err := time.ParseDuration(q)
		require.NoError(b, err, "$SERVICE_SETTLE")
		cfg.Settle = d
		if d == 0 {
			cfg.Settle = -1
		}
	}
	return cfg
}

// reportTimings reports runs per second over elapsed and the shares of
// the runs' time.
func reportTimings(b *testing.B, t service.Timings, elapsed time.Duration) {
	b.ReportMetric(float64(t.Runs)/elapsed.Seconds(), "runs/s")
	total := t.Total()
	if total <= 0 {
		return
	}
	share := func(d time.Duration) float64 { return 100 * float64(d) / float64(total) }
	b.ReportMetric(float64(total.Milliseconds())/float64(t.Runs), "ms/run")
	b.ReportMetric(share(t.Schema), "%schema")
	b.ReportMetric(share(t.Setup), "%setup")
	b.ReportMetric(share(t.Start), "%start")
	b.ReportMetric(share(t.Work), "%work")
	b.ReportMetric(share(t.Drain), "%drain")
	b.ReportMetric(share(t.Teardown), "%teardown")
	b.ReportMetric(share(t.Check), "%check")
}

// BenchmarkServiceVerdicts runs each variant of the example (the correct
// one and the three broken ones) on generated cases of every fault kind
// and reports the share of runs that are violations: the correct one must
// have none; the broken ones' shares are what a faster drain must not
// lower.
func BenchmarkServiceVerdicts(b *testing.B) {
	for _, bug := range []string{"correct", "ack-first", "dedup-first", "check-first"} {
		b.Run(bug, func(b *testing.B) {
			variant := bug
			if variant == "correct" {
				variant = ""
			}
			r, err := service.New(benchConfig(b, variant))
			require.NoError(b, err)
			b.Cleanup(func() { require.NoError(b, r.Close()) })
			ctx := context.Background()
			violations := 0
			for i := range b.N {
				seed := uint64(30000 + i)
				_, res, err := r.Run(ctx, r.Generate(seed), seed)
				require.NoError(b, err)
				require.NotEqual(b, histories.Inconclusive, res.Verdict, "seed %d: %s", seed, res.Reason)
				if res.Verdict == histories.Violation {
					violations++
				}
			}
			if variant == "" {
				require.Zero(b, violations, "the correct variant failed")
			}
			b.ReportMetric(float64(violations), "violations")
			b.ReportMetric(float64(violations)/float64(b.N), "violations/run")
		})
	}
}
