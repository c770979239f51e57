package service

import (
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/internal/pgtest"
)

// passHooks lets every statement through: the proxy's own bookkeeping is
// what is tested.
type passHooks struct{}

func (passHooks) statement(*pgConn, string) verdict            { return verdict{} }
func (passHooks) result(*pgConn, string, string, bool) verdict { return verdict{} }

// TestPGProxyIsBusyWhileTheServerOwesAnAnswer: a connection is not idle
// from its accept until the server's first ReadyForQuery (the startup and
// its authentication), nor after a Parse the server has not answered yet;
// it is once the server is ready again.
func TestPGProxyIsBusyWhileTheServerOwesAnAnswer(t *testing.T) {
	cfg, err := pgconn.ParseConfig(pgtest.DSN(t))
	require.NoError(t, err)
	network, addr, err := pgUpstream(pgtest.DSN(t))
	require.NoError(t, err)
	p, err := newPGProxy(network, addr, 0, func() int { return 1 }, passHooks{})
	require.NoError(t, err)
	defer p.close()
	require.True(t, p.idle(), "no connection yet")

	conn, err := net.Dial("tcp", p.addr())
	require.NoError(t, err)
	defer conn.Close()
	require.Eventually(t, func() bool { return !p.idle() }, 5*time.Second, time.Millisecond, "a connection accepted waits for its startup")
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": cfg.User, "database": cfg.Database}})
	require.NoError(t, fe.Flush())
	untilReady(t, fe)
	require.True(t, p.idle(), "ready for a query")

	fe.Send(&pgproto3.Parse{Query: "SELECT 1"})
	require.NoError(t, fe.Flush())
	require.Eventually(t, func() bool { return !p.idle() }, 5*time.Second, time.Millisecond, "a Parse not yet answered")
	time.Sleep(20 * time.Millisecond)
	require.False(t, p.idle(), "the server answers a Parse at the Sync")
	fe.Send(&pgproto3.Sync{})
	require.NoError(t, fe.Flush())
	untilReady(t, fe)
	require.True(t, p.idle(), "answered")

	fe.Send(&pgproto3.Query{String: "SELECT pg_sleep(0.05)"})
	require.NoError(t, fe.Flush())
	require.Eventually(t, func() bool { return !p.idle() }, 5*time.Second, time.Millisecond, "a query in flight")
	untilReady(t, fe)
	require.True(t, p.idle())
}

// untilReady reads the server's messages up to its ReadyForQuery.
func untilReady(t *testing.T, fe *pgproto3.Frontend) {
	t.Helper()
	for {
		m, err := fe.Receive()
		require.NoError(t, err)
		switch m := m.(type) {
		case *pgproto3.ReadyForQuery:
			return
		case *pgproto3.ErrorResponse:
			require.Failf(t, "the server refused", "%s", m.Message)
		}
	}
}
