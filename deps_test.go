package oncecheck

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestInMemoryProgramsDoNotLinkPgx lists what a program that verifies or
// checks on the in-memory backend links (this package, the engine, the
// catalogue): no PostgreSQL driver, no pg backend. Only a program that
// names pgstore (or writes SQL, through sqlenv) links pgx.
func TestInMemoryProgramsDoNotLinkPgx(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".", "./campaign", "./catalogue").CombinedOutput()
	require.NoError(t, err, "%s", out)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/oncecheck/oncecheck/adapters/memstore", "the list is of real dependencies")
	for _, d := range deps {
		require.NotContains(t, d, "github.com/jackc/", "an in-memory program links %s", d)
		require.NotEqual(t, "github.com/oncecheck/oncecheck/adapters/pgstore", d)
		require.NotEqual(t, "github.com/oncecheck/oncecheck/adapters/sqlenv", d)
		require.NotContains(t, d, "github.com/redis/", "an in-memory program links %s", d)
	}
	out, err = exec.Command("go", "list", "-deps", "./cmd/oncecheck").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, strings.Fields(string(out)), "github.com/jackc/pgx/v5", "the command line, which offers the pg backend, links pgx")
}

// TestTheSimulationImportsNoBackend: the simulation runs on whatever store
// it is given; it imports neither backend, nor franz-go (only its log
// broker's conformance test runs kfake).
func TestTheSimulationImportsNoBackend(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./sim").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, d := range strings.Fields(string(out)) {
		require.NotContains(t, d, "/adapters/memstore")
		require.NotContains(t, d, "/adapters/pgstore")
		require.NotContains(t, d, "github.com/jackc/")
		require.NotContains(t, d, "/adapters/rediscache")
		require.NotContains(t, d, "github.com/twmb/franz-go")
	}
}
