package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// The PostgreSQL queue's flags go with --broker postgres, and what is
// missing or cannot be read is a usage error that names the flag.
func TestServiceQueueFlags(t *testing.T) {
	schema := filepath.Join(t.TempDir(), "schema.sql")
	require.NoError(t, os.WriteFile(schema, []byte("CREATE TABLE jobs (id text)"), 0o600))
	base := []string{"service", "--cmd", "true", "--observe-sql", "SELECT 1", "--pg", "postgres://127.0.0.1:1/x", "--runs", "1"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--broker", "postgres", "--schema", schema, "--outputs-table", "events"}, "--send-sql is required with --broker postgres"},
		{[]string{"--broker", "postgres", "--schema", schema, "--send-sql", "INSERT INTO jobs (id) VALUES ($1)"}, "--outputs-table is required"},
		{[]string{"--broker", "postgres", "--send-sql", "INSERT INTO jobs (id) VALUES ($1)", "--outputs-table", "events"}, "--schema is required with --broker postgres"},
		{[]string{"--broker", "postgres", "--schema", schema, "--send-sql", "INSERT INTO jobs (id) VALUES ($1)", "--outputs-table", "events", "--broker-url", "x"}, "--broker-url: the postgres queue"},
		{[]string{"--broker", "postgres", "--schema", schema, "--send-sql", "SELECT enqueue($1)", "--outputs-table", "events"}, "--queue TABLE.COLUMN"},
		{[]string{"--broker", "postgres", "--schema", schema, "--send-sql", "INSERT INTO jobs (key) VALUES ($2)", "--outputs-table", "events"}, "must store $1"},
		{[]string{"--broker", "postgres", "--schema", schema, "--send-sql", "INSERT INTO jobs (id) VALUES ($1)", "--outputs-table", "events", "--faults", "publish-failure"}, "not injected in service mode on postgres"},
		{[]string{"--broker", "nats", "--done-when", "done"}, "--done-when is for --broker postgres"},
		{[]string{"--broker", "postgres", "--schema", schema, "--send-sql", "INSERT INTO jobs (id) VALUES ($1)", "--outputs-table", "events", "--queue", "jobs"}, "the queue \"jobs\""},
		{[]string{"--broker", "postgres", "--schema", schema, "--send-sql", "INSERT INTO jobs (id) VALUES ($1)", "--outputs-table", "a.events"}, "the outputs table \"a.events\""},
		{[]string{"--broker", "postgres", "--schema", schema, "--send-sql", "INSERT INTO jobs (id) VALUES ($1)", "--outputs-table", "events", "--release-sql", "UPDATE jobs SET done = true"}, "release statement"},
		{[]string{"--consumers", "17"}, "17 consumers, at most 16"},
		{[]string{"--broker", "redis", "--lease", "2s"}, "--lease is for --broker postgres"},
	} {
		code, _, stderr := cli(t, append(append([]string{}, base...), tc.args...)...)
		require.Equal(t, exitUsage, code, "%v: %s", tc.args, stderr)
		require.Contains(t, stderr, tc.want, tc.args)
	}
}
