// Package redistest finds the Redis server a test needs, as
// scripts/with-redis.sh does: $ONCECHECK_REDIS, else the server on
// 127.0.0.1:6379 when one answers there. Without a server a test fails in
// CI ($CI set), and elsewhere is skipped, saying why.
package redistest

import (
	"net"
	"os"
	"testing"
	"time"
)

// DefaultAddr is the server tried when $ONCECHECK_REDIS is not set.
const DefaultAddr = "127.0.0.1:6379"

// Addr returns the address of the server the test uses, or ends the test.
func Addr(tb testing.TB) string {
	tb.Helper()
	if addr := os.Getenv("ONCECHECK_REDIS"); addr != "" {
		return addr
	}
	if conn, err := net.DialTimeout("tcp", DefaultAddr, 2*time.Second); err == nil {
		_ = conn.Close()
		return DefaultAddr
	}
	const why = "no Redis: $ONCECHECK_REDIS is not set and nothing answers on 127.0.0.1:6379 (make test starts a server)"
	if os.Getenv("CI") != "" {
		tb.Fatal(why)
	}
	tb.Skip(why)
	return ""
}
