package shop_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck"
	"github.com/oncecheck/oncecheck/adapters/pgstore"
	"github.com/oncecheck/oncecheck/examples/shop"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/internal/pgtest"
)

// This is all a team needs to keep its handler honest in CI.
func TestShopIsExactlyOnce(t *testing.T) {
	oncecheck.Verify(t, oncecheck.Spec{
		Model:    shop.Model,
		Strategy: shop.Strategy,
		Backend:  pgstore.Backend{DSN: pgtest.DSN(t)}, // every fault kind
		Runs:     80,
		CLI:      "./examples/shop/cmd/shopcheck", // a failure prints its show, check and replay commands
	})
}

// The same with the consumers truly in parallel on PostgreSQL: the inbox's
// primary key and the cart's row lock keep them apart.
func TestShopIsExactlyOnceWithParallelConsumers(t *testing.T) {
	oncecheck.Verify(t, oncecheck.Spec{
		Model:       shop.Model,
		Strategy:    shop.Strategy,
		Backend:     pgstore.Backend{DSN: pgtest.DSN(t)},
		Faults:      []faults.Kind{faults.Crash, faults.Redelivery, faults.PublishFailure, faults.Reissue},
		Runs:        40,
		CLI:         "./examples/shop/cmd/shopcheck",
		FreeRunning: true,
	})
}

// recorder stands in for *testing.T to show the broken variant failing
// without failing this test.
type recorder struct{ errors, logs []string }

func (*recorder) Helper()      {}
func (*recorder) Name() string { return "TestBrokenShop" }
func (r *recorder) Logf(format string, args ...any) {
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recorder) Skipf(format string, args ...any) { r.Errorf(format, args...) }

func TestBrokenShopIsCaughtWithAClearExplanation(t *testing.T) {
	r := &recorder{}
	oncecheck.Verify(r, oncecheck.Spec{
		Model:    shop.Model,
		Strategy: shop.Broken,
		Backend:  pgstore.Backend{DSN: pgtest.DSN(t)},
		Faults:   []faults.Kind{faults.Crash},
		Runs:     200,
		Out:      t.TempDir(),
		CLI:      "./examples/shop/cmd/shopcheck",
	})
	require.Len(t, r.errors, 1, "the broken variant must fail")
	msg := r.errors[0]
	t.Log(msg)
	require.Contains(t, msg, "oncecheck: shop-broken is not exactly-once: lost")
	require.Contains(t, msg, "had no effect at all")
	require.Contains(t, msg, "crash consumer at delivery #1")
	require.True(t, strings.Contains(msg, "sql: INSERT INTO inbox"), "the timeline shows the inbox insert")
	require.Contains(t, msg, "go test -run '^TestBrokenShop$' ./examples/shop\n", "the replay command names the package from the module's root")
	require.Contains(t, msg, "report: go run ./examples/shop/cmd/shopcheck show --html report.html /", "the shop's own command line opens it")
}
