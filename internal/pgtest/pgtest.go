// Package pgtest finds the PostgreSQL server a test needs, as
// scripts/with-postgres.sh does: $ONCECHECK_PG, else the server on
// 127.0.0.1:5432 when one answers there. Without a server a test fails
// in CI ($CI set), and elsewhere is skipped, saying why.
package pgtest

import (
	"net"
	"os"
	"testing"
	"time"
)

// DefaultDSN is the server tried when $ONCECHECK_PG is not set: trust
// authentication, database "test".
const DefaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// DSN returns the DSN of the server the test uses, or ends the test.
func DSN(tb testing.TB) string {
	tb.Helper()
	if dsn := os.Getenv("ONCECHECK_PG"); dsn != "" {
		return dsn
	}
	if conn, err := net.DialTimeout("tcp", "127.0.0.1:5432", 2*time.Second); err == nil {
		_ = conn.Close()
		return DefaultDSN
	}
	const why = "no PostgreSQL: $ONCECHECK_PG is not set and nothing answers on 127.0.0.1:5432 (make test starts a server)"
	if os.Getenv("CI") != "" {
		tb.Fatal(why)
	}
	tb.Skip(why)
	return ""
}
