package campaign

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters/rediscache"
	"github.com/oncecheck/oncecheck/internal/redistest"
)

// cacheStrategies are the built-in strategies that use Env.Cache.
var cacheStrategies = []string{"redis-setnx", "redis-setnx-after", "redis-setnx-release", "broker-window"}

// TestCacheStrategiesOnRedisAsInMemory runs the matrix rows of the
// strategies that use the cache on a real Redis: every cell must meet
// expected/matrix.json, with the same verdict, anomalies and run as on the
// simulation's in-memory cache (a run is a function of its case on both).
func TestCacheStrategiesOnRedisAsInMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("heavy: make test runs it in its second step, without -race and -short")
	}
	addr := redistest.Addr(t)
	expected, err := LoadExpectedMatrix("../expected/matrix.json")
	require.NoError(t, err)
	for _, name := range builtin.ModelNames() {
		t.Run(name, func(t *testing.T) {
			o := MatrixOptions{Model: mdl(name), Strategies: strats(cacheStrategies...), Runs: 500, Seed: 1, Out: t.TempDir()}
			mem, err := RunMatrix(context.Background(), o)
			require.NoError(t, err)
			o.Cache = rediscache.Backend{Addr: addr}
			red, err := RunMatrix(context.Background(), o)
			require.NoError(t, err)
			require.Empty(t, expected.Compare(red))
			require.Len(t, red.Cells, len(mem.Cells))
			for i, c := range red.Cells {
				m := mem.Cells[i]
				require.Equal(t, m.Summary(), c.Summary(), "%s/%s", c.Strategy, c.Fault)
				require.Equal(t, m.RunsToFailure, c.RunsToFailure, "%s/%s", c.Strategy, c.Fault)
			}
		})
	}
}
