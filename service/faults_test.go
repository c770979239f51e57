package service

import (
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/oncecheck/oncecheck/faults"
)

// TestGeneratedServiceFaultsAreValid: the generator places cut-connection,
// broker-restart and late faults on the workload's deliveries, and each is
// described.
func TestGeneratedServiceFaultsAreValid(t *testing.T) {
	cfg := Config{Command: "true", ObserveSQL: "SELECT 1", DSN: "postgres://x", Faults: []faults.Kind{faults.CutConnection, faults.BrokerRestart, faults.Late}}
	require.NoError(t, cfg.defaults())
	gen := cfg.generator()
	seen := map[faults.Kind]bool{}
	rapid.Check(t, func(t *rapid.T) {
		c := gen.Draw(t, "case")
		require.NoError(t, c.Plan.Validate())
		for _, f := range c.Plan.Faults {
			seen[f.Kind] = true
			require.Less(t, f.At, len(c.Workload))
			require.NotEqual(t, f.String(), Describe(f), "service mode describes %s itself", f.Kind)
			if f.Kind == faults.CutConnection {
				require.Less(t, f.Index, cutStatements)
			}
			if f.Kind == faults.Late {
				require.Equal(t, faults.Duration(lateDelay), f.Delay)
				require.Greater(t, lateDelay, natsInDuplicates, "a late copy comes after ONCECHECK_IN's duplicate window")
			}
		}
	})
	require.True(t, seen[faults.CutConnection] && seen[faults.BrokerRestart] && seen[faults.Late], "every kind is generated: %v", seen)
}

// TestBrokerRestartNeedsAnEmbeddedBroker: an external NATS server cannot
// be restarted by oncecheck, and the configuration says so.
func TestBrokerRestartNeedsAnEmbeddedBroker(t *testing.T) {
	cfg := Config{Command: "true", ObserveSQL: "SELECT 1", DSN: "postgres://x", BrokerURL: "nats://127.0.0.1:4222", Faults: []faults.Kind{faults.BrokerRestart}}
	require.ErrorContains(t, cfg.defaults(), "embedded NATS server")
	require.ErrorIs(t, (&natsBroker{url: "nats://127.0.0.1:4222"}).restartable(), errNoRestart)
	require.ErrorIs(t, restartable(&natsBroker{url: "nats://127.0.0.1:4222"}), errNoRestart)
}
