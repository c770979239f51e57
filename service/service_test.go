package service

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/model"
)

func TestReadFrameReadsMessagesWithHeaders(t *testing.T) {
	hdr := "NATS/1.0\r\nNats-Msg-Id: m1\r\nOncecheck-Key: k1\r\n\r\n"
	body := `{"sku":"a"}`
	in := "INFO {}\r\n" +
		"HMSG oncecheck.in.o1 7 $JS.ACK.ONCECHECK_IN.orders.2.5.5.1.0 " + itoa(len(hdr)) + " " + itoa(len(hdr)+len(body)) + "\r\n" + hdr + body + "\r\n" +
		"PUB $JS.ACK.ONCECHECK_IN.orders.2.5.5.1.0 4\r\n+ACK\r\n" +
		"PING\r\n"
	r := bufio.NewReader(strings.NewReader(in))
	f, err := readFrame(r)
	require.NoError(t, err)
	require.Equal(t, "INFO", f.op)
	f, err = readFrame(r)
	require.NoError(t, err)
	require.Equal(t, "HMSG", f.op)
	require.Equal(t, "oncecheck.in.o1", f.subject)
	require.Equal(t, "$JS.ACK.ONCECHECK_IN.orders.2.5.5.1.0", f.reply)
	require.Equal(t, "m1", f.header.Get(HeaderMsgID))
	require.Equal(t, "k1", f.header.Get(HeaderKey))
	require.Equal(t, body, string(f.body))
	require.Equal(t, "2", deliveryCount(f.reply))
	f, err = readFrame(r)
	require.NoError(t, err)
	require.Equal(t, "PUB", f.op)
	require.Equal(t, "+ACK", string(f.body))
	require.Equal(t, "", f.reply)
	f, err = readFrame(r)
	require.NoError(t, err)
	require.Equal(t, "PING", f.op)
	require.Equal(t, "PING\r\n", string(f.raw))
}

func TestReadFrameRefusesAMalformedLine(t *testing.T) {
	_, err := readFrame(bufio.NewReader(strings.NewReader("HPUB a b c d e f\r\n")))
	require.Error(t, err)
}

func TestReadPGReadsTypedAndStartupMessages(t *testing.T) {
	startup := make([]byte, 8)
	binary.BigEndian.PutUint32(startup, 8)
	binary.BigEndian.PutUint32(startup[4:], pgSSLRequest)
	q := append([]byte{'Q', 0, 0, 0, 11}, []byte("COMMIT\x00")...)
	r := bufio.NewReader(strings.NewReader(string(startup) + string(q)))
	m, err := readPG(r, false)
	require.NoError(t, err)
	require.Equal(t, uint32(pgSSLRequest), binary.BigEndian.Uint32(m.body))
	m, err = readPG(r, true)
	require.NoError(t, err)
	require.Equal(t, byte('Q'), m.typ)
	require.Equal(t, q, m.raw)
}

func TestStatementsAndTags(t *testing.T) {
	for _, s := range []string{"commit", " COMMIT; ", "end", "commit transaction"} {
		require.True(t, isCommit(s), s)
	}
	require.False(t, isCommit("committed_at = now()"))
	require.True(t, isWrite("INSERT 0 1"))
	require.False(t, isWrite("SELECT 1"))
}

func TestDSNs(t *testing.T) {
	u, err := withSearchPath("postgres://u:p@db:5432/test?sslmode=disable", "s1")
	require.NoError(t, err)
	require.Contains(t, u, "options=-csearch_path%3Ds1")
	u, err = throughProxy(u, "127.0.0.1:6000")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(u, "postgres://u:p@127.0.0.1:6000/test?"), u)
	k, err := throughProxy("host=db dbname=test", "127.0.0.1:6000")
	require.NoError(t, err)
	require.Equal(t, "host=db dbname=test host=127.0.0.1 port=6000", k)
	addr, err := upstreamAddr("nats://127.0.0.1:4222")
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:4222", addr)
}

// TestGeneratedPlansAreValid: every generated case has a valid plan, in
// the history format's terms, over its own workload.
func TestGeneratedPlansAreValid(t *testing.T) {
	cfg := Config{Command: "true", ObserveSQL: "SELECT 1", DSN: "postgres://x", Faults: Kinds}
	require.NoError(t, cfg.defaults())
	gen := cfg.generator()
	rapid.Check(t, func(t *rapid.T) {
		c := gen.Draw(t, "case")
		require.NoError(t, c.Plan.Validate())
		require.Equal(t, 2, c.Plan.Consumers)
		for _, f := range c.Plan.Faults {
			require.NotEqual(t, faults.Concurrent, f.Kind)
			require.NotContains(t, Describe(f), "%!")
		}
		require.NotEmpty(t, c.Workload)
	})
}

func TestConfigRefusesWhatItCannotInject(t *testing.T) {
	cfg := Config{Command: "true", ObserveSQL: "SELECT 1", DSN: "postgres://x", Broker: "kafka", Faults: []faults.Kind{faults.BrokerRestart}}
	require.ErrorContains(t, cfg.defaults(), "not injected in service mode on kafka")
	cfg = Config{ObserveSQL: "SELECT 1", DSN: "postgres://x", Model: model.Orders{}}
	require.ErrorContains(t, cfg.defaults(), "no command")
}

// TestConfigWantsOneWayToObserve: the state is read by a query or by a
// function, not both, not neither.
func TestConfigWantsOneWayToObserve(t *testing.T) {
	observe := func(context.Context, *pgx.Conn) (map[string]model.State, error) { return nil, nil }
	cfg := Config{Command: "true", DSN: "postgres://x"}
	require.ErrorContains(t, cfg.defaults(), "no observation: set ObserveSQL (a query) or Observe (a function)")
	cfg = Config{Command: "true", DSN: "postgres://x", ObserveSQL: "SELECT 1", Observe: observe}
	require.ErrorContains(t, cfg.defaults(), "ObserveSQL and Observe are both set")
	cfg = Config{Command: "true", DSN: "postgres://x", Observe: observe}
	require.NoError(t, cfg.defaults())
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestConfigErrorsAreTyped: every error of the configuration, the queue
// contract's included, is a ConfigError, found before anything runs.
func TestConfigErrorsAreTyped(t *testing.T) {
	base := Config{Command: "true", ObserveSQL: "SELECT 1", DSN: "postgres://127.0.0.1:1/x"}
	q := PGQueue{SendSQL: "INSERT INTO jobs (id) VALUES ($1)", Outputs: "events"}
	for _, mod := range []func(*Config){
		func(c *Config) { c.Command = "" },
		func(c *Config) { c.Consumers = 17 },
		func(c *Config) { c.Broker = "carrier-pigeon" },
		func(c *Config) { c.Faults = []faults.Kind{faults.BrokerRestart}; c.Broker = "kafka" },
		func(c *Config) { c.Broker, c.Schema, c.Queue = "postgres", "x", q; c.Queue.Queue = "jobs" },
		func(c *Config) { c.Broker, c.Schema, c.Queue = "postgres", "x", q; c.Queue.Outputs = "a.b" },
		func(c *Config) {
			c.Broker, c.Schema, c.Queue = "postgres", "x", q
			c.Queue.SendSQL = "SELECT enqueue($1)"
		},
		func(c *Config) {
			c.Broker, c.Schema, c.Queue = "postgres", "x", q
			c.Queue.ReleaseSQL = "UPDATE jobs SET done"
		},
		func(c *Config) { c.Broker, c.Queue = "postgres", q },
		func(c *Config) { c.Broker, c.Schema, c.Queue, c.BrokerURL = "postgres", "x", q, "x" },
	} {
		cfg := base
		mod(&cfg)
		r, err := New(cfg)
		if r != nil {
			_ = r.Close()
		}
		require.Error(t, err)
		_, ok := errors.AsType[*ConfigError](err)
		require.True(t, ok, "%v", err)
	}
}
