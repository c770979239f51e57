package cli

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// --broker log runs on the log broker, in run, matrix and replay; an
// unknown broker is a usage error that names the flag.
func TestBrokerFlag(t *testing.T) {
	dir := t.TempDir()
	code, out, _ := cli(t, "run", "--strategy", "sequence", "--faults", "crash", "--broker", "log", "--runs", "100", "--seed", "1", "--out", dir, "-q")
	require.Equal(t, exitPass, code, out)
	code, out, _ = cli(t, "run", "--strategy", "sequence", "--faults", "crash", "--runs", "100", "--seed", "1", "--out", dir, "-q")
	require.Equal(t, exitViolation, code, out)
	saved, err := filepath.Glob(filepath.Join(dir, "sequence-*.jsonl"))
	require.NoError(t, err)
	require.Len(t, saved, 1)

	// The queue's counterexample, replayed on the log, passes: the
	// partition restarts from its committed offset, in order.
	code, out, _ = cli(t, "replay", "--broker", "log", saved[0])
	require.Equal(t, exitPass, code, out)
	code, out, _ = cli(t, "replay", saved[0])
	require.Equal(t, exitViolation, code, out)

	code, out, _ = cli(t, "run", "--strategy", "sequence", "--faults", "crash", "--broker", "log", "--runs", "5", "--seed", "1", "--out", dir, "--json")
	require.Equal(t, exitPass, code, out)
	var run struct {
		Broker string `json:"broker"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &run))
	require.Equal(t, "log", run.Broker)

	code, out, stderr := cli(t, "run", "--strategy", "naive", "--broker", "kafka", "--runs", "1", "--out", dir)
	require.Equal(t, exitUsage, code, out)
	require.Contains(t, stderr, `--broker: unknown broker "kafka" (known: queue, log)`)
	code, out, stderr = cli(t, "run", "--strategy", "naive", "--broker", "log", "--free-running", "--runs", "1", "--out", dir)
	require.Equal(t, exitUsage, code, out)
	require.Contains(t, stderr, "--broker: the log broker runs scheduled runs only")

	code, out, _ = cli(t, "matrix", "--model", "orders", "--broker", "log", "--runs", "10", "--shrink=false", "--out", dir)
	require.Contains(t, []int{exitPass, exitViolation}, code, out)
	require.Contains(t, out, "model orders: 10 runs per cell, seed 1, backend mem, read-committed, broker log")
	code, out, _ = cli(t, "matrix", "--model", "orders", "--broker", "log", "--runs", "10", "--shrink=false", "--out", dir, "--format", "json")
	require.Contains(t, []int{exitPass, exitViolation}, code, out)
	var doc struct {
		Models []struct {
			Broker string `json:"broker"`
		} `json:"models"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &doc))
	require.Equal(t, "log", doc.Models[0].Broker)
}
