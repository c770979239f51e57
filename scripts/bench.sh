#!/usr/bin/env bash
# bench.sh: every benchmark family of docs/benchmarks.md, each with the
# iteration count its figures need, into bench-latest.txt (or $BENCH_OUT),
# then the summary tables (internal/benchtable). Run it through
# scripts/with-postgres.sh (make bench does) for the PostgreSQL family.
# Every ratio printed is between two benchmarks of this one run.
set -euo pipefail
out=${BENCH_OUT:-bench-latest.txt}
go=${GO:-go}
: >"$out"
family() {
	# $1: package, $2: -bench pattern, $3: -benchtime, then extra flags
	local pkg=$1 pattern=$2 benchtime=$3
	shift 3
	echo "== $pkg -bench '$pattern' -benchtime $benchtime $*" >&2
	"$go" test -run '^$' -bench "$pattern" -benchtime "$benchtime" -benchmem -timeout 30m "$pkg" "$@" | tee -a "$out" | grep '^Benchmark' >&2 || {
		echo "bench.sh: the family $pattern failed (its output is in $out)" >&2
		exit 1
	}
}
family ./campaign '^BenchmarkHarness$' 1000x
family ./campaign '^BenchmarkParallelRuns$' 4x
family ./campaign '^BenchmarkCampaignMemory$' 1x
family ./campaign '^BenchmarkCheckOneRun$' 1000x
family ./campaign '^BenchmarkUnsafeCells$' 1x
family ./campaign '^BenchmarkPostgresTransactions$' 2s
family ./checkers '^BenchmarkCheck$/1000$' 50x
family ./checkers '^BenchmarkCheck$/10000$' 10x
family ./checkers '^BenchmarkCheck$/100000$' 3x
family ./checkers '^BenchmarkCheck$/1000000$' 2x
family ./checkers '^BenchmarkCheckScaling$' 2x
family ./histories '^BenchmarkDecodeEvent$' 100x
# Service mode: the example service, every fault kind, on 1, 2 and 4 runners.
family ./examples/service '^BenchmarkServiceRuns$' 40x
# Each alone in its process, so that the peak memory belongs to one check.
family ./checkers '^BenchmarkCheckPeakMemory$/^file$' 1x
family ./checkers '^BenchmarkCheckPeakMemory$/^in-memory$' 1x
echo >&2
"$go" run ./internal/benchtable "$out"
