// Package amqptest finds the RabbitMQ server a test needs, as
// scripts/with-rabbitmq.sh does: $ONCECHECK_AMQP, else the server on
// 127.0.0.1:5672 (guest/guest) when one answers there. Without a server a
// test fails in CI ($CI set), and elsewhere is skipped, saying why.
package amqptest

import (
	"net"
	"os"
	"testing"
	"time"
)

// DefaultURL is the server tried when $ONCECHECK_AMQP is not set.
const DefaultURL = "amqp://guest:guest@127.0.0.1:5672/"

// URL returns the URL of the server the test uses, or ends the test.
func URL(tb testing.TB) string {
	tb.Helper()
	if u := os.Getenv("ONCECHECK_AMQP"); u != "" {
		return u
	}
	if conn, err := net.DialTimeout("tcp", "127.0.0.1:5672", 2*time.Second); err == nil {
		_ = conn.Close()
		return DefaultURL
	}
	const why = "no RabbitMQ: $ONCECHECK_AMQP is not set and nothing answers on 127.0.0.1:5672 (make test starts a server)"
	if os.Getenv("CI") != "" {
		tb.Fatal(why)
	}
	tb.Skip(why)
	return ""
}
