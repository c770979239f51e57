package service

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/oncecheck/oncecheck/internal/redistest"
	"github.com/oncecheck/oncecheck/model"
)

// respGen draws a RESP2 or RESP3 value, encoded, nested up to depth.
func respGen(depth int) *rapid.Generator[string] {
	return rapid.Custom(func(t *rapid.T) string {
		kinds := []string{"+", "-", ":", "$", "$-1", "_", ",", "#", "(", "=", "!"}
		if depth > 0 {
			kinds = append(kinds, "*", "*-1", "%", "~", ">", "|")
		}
		word := rapid.StringMatching(`[a-zA-Z0-9 ]{0,8}`).Draw(t, "word")
		switch k := rapid.SampledFrom(kinds).Draw(t, "kind"); k {
		case "+", "-", ",", "(":
			return k + word + "\r\n"
		case ":":
			return fmt.Sprintf(":%d\r\n", rapid.Int64().Draw(t, "n"))
		case "#":
			return "#t\r\n"
		case "_", "$-1", "*-1":
			return k + "\r\n"
		case "$", "!", "=":
			bulk := rapid.String().Draw(t, "bulk") // may hold \r\n
			return fmt.Sprintf("%s%d\r\n%s\r\n", k, len(bulk), bulk)
		case "|":
			return "|1\r\n+a\r\n+b\r\n" + respGen(depth-1).Draw(t, "annotated")
		default:
			n := rapid.IntRange(0, 3).Draw(t, "len")
			s := fmt.Sprintf("%s%d\r\n", k, n)
			if k == "%" {
				n *= 2
			}
			for range n {
				s += respGen(depth-1).Draw(t, "elem")
			}
			return s
		}
	})
}

// TestRESPReaderReadsEveryType: any sequence of values is read back value
// by value, each with exactly its bytes, the elements' bytes inside it.
func TestRESPReaderReadsEveryType(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		vals := rapid.SliceOfN(respGen(3), 1, 4).Draw(t, "values")
		rr := &respReader{r: bufio.NewReaderSize(strings.NewReader(strings.Join(vals, "")), 16)}
		for _, want := range vals {
			v, raw, err := rr.read()
			require.NoError(t, err)
			require.Equal(t, want, string(raw))
			for _, e := range v.elems {
				require.True(t, e.start >= 0 && e.end <= len(raw) && e.start < e.end)
			}
		}
	})
}

func TestRESPReaderReadsInlineCommands(t *testing.T) {
	rr := &respReader{r: bufio.NewReader(strings.NewReader("PING hello\r\n"))}
	v, raw, err := rr.read()
	require.NoError(t, err)
	require.Equal(t, "PING hello\r\n", string(raw))
	require.Len(t, v.elems, 2)
	require.Equal(t, "hello", v.elems[1].text())
}

// recorded is what a recorder saw through a proxy.
type recorded struct {
	kind, what string
}

// recorder records what a Redis proxy reports, and answers with the
// verdicts a test sets: it stands where the run stands.
type recorder struct {
	mu        sync.Mutex
	seen      []recorded
	onDeliver func(delivery) verdict
	onAck     func(token string) verdict
	onPublish func(output) verdict
}

func (r *recorder) alive(*proxyConn) bool { return true }

func (r *recorder) delivered(_ *proxyConn, d delivery) verdict {
	r.mu.Lock()
	r.seen = append(r.seen, recorded{"deliver", d.id + " #" + d.count})
	f := r.onDeliver
	r.mu.Unlock()
	if f != nil {
		return f(d)
	}
	return verdict{}
}

func (r *recorder) acked(_ *proxyConn, token string, _ bool, _ string) verdict {
	r.mu.Lock()
	r.seen = append(r.seen, recorded{"ack", token[strings.LastIndexByte(token, '#'):]})
	f := r.onAck
	r.mu.Unlock()
	if f != nil {
		return f(token)
	}
	return verdict{}
}

func (r *recorder) published(_ *proxyConn, o output) verdict {
	r.mu.Lock()
	r.seen = append(r.seen, recorded{"publish", o.id + " " + o.typ + " " + o.cause + " " + string(o.body)})
	f := r.onPublish
	r.mu.Unlock()
	if f != nil {
		return f(o)
	}
	return verdict{}
}

func (r *recorder) events() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.seen...)
}

// proxied starts a broker on the test's Redis, resets it, sends two
// messages, and returns it with a proxy, a client through the proxy
// speaking protocol (2 or 3), and the recorder.
func proxied(t *testing.T, protocol int) (*redisBroker, *redis.Client, *recorder) {
	t.Helper()
	b, err := startRedis(redistest.Addr(t))
	require.NoError(t, err)
	t.Cleanup(b.close)
	ctx := context.Background()
	require.NoError(t, b.reset(ctx))
	for _, id := range []string{"m1", "m2"} {
		require.NoError(t, b.send(ctx, model.Message{ID: id, Key: "k" + id, Type: "AddItem", Aggregate: "o1", Payload: []byte(`{"sku":"a"}`)}, false))
	}
	rec := &recorder{}
	px, err := b.proxy(0, func() int { return 0 }, rec)
	require.NoError(t, err)
	t.Cleanup(px.close)
	var url string
	for _, e := range px.env() {
		if v, ok := strings.CutPrefix(e, "REDIS_URL="); ok {
			url = v
		}
	}
	opts, err := redis.ParseURL(url)
	require.NoError(t, err)
	opts.Protocol = protocol
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	in, _ := b.streams()
	require.NoError(t, c.XGroupCreate(ctx, in, "g", "0").Err())
	return b, c, rec
}

// TestRedisProxySeesDeliveriesAcksAndPublishes, in RESP2 and RESP3: the
// entries XREADGROUP and XAUTOCLAIM give are deliveries, numbered; an
// XACK is the ack of this process's last delivery of the entry; an XADD to
// the output stream is a publish; a pipeline's replies keep their order.
func TestRedisProxySeesDeliveriesAcksAndPublishes(t *testing.T) {
	for _, protocol := range []int{2, 3} {
		t.Run(fmt.Sprint("RESP", protocol), func(t *testing.T) {
			b, c, rec := proxied(t, protocol)
			ctx := context.Background()
			in, out := b.streams()
			streams, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c1", Streams: []string{in, ">"}, Count: 1}).Result()
			require.NoError(t, err)
			first := streams[0].Messages[0]
			require.Equal(t, "m1", first.Values["id"])
			// A claim of the pending entry by the same process: its second
			// delivery.
			claimed, _, err := c.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: in, Group: "g", Consumer: "c2", MinIdle: 0, Start: "0-0", Count: 1}).Result()
			require.NoError(t, err)
			require.Len(t, claimed, 1)
			// A pipeline: the second entry, a publish, an ack, all at once.
			pipe := c.Pipeline()
			read := pipe.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c1", Streams: []string{in, ">"}, Count: 1})
			add := pipe.XAdd(ctx, &redis.XAddArgs{Stream: out, Values: []any{"id", "k1/0", "type", "ItemAdded", "cause", "km1", "payload", `{"sku":"a"}`}})
			ack := pipe.XAck(ctx, in, "g", first.ID)
			_, err = pipe.Exec(ctx)
			require.NoError(t, err)
			require.Equal(t, "m2", read.Val()[0].Messages[0].Values["id"])
			require.NotEmpty(t, add.Val())
			require.Equal(t, int64(1), ack.Val())
			// Commands are judged as they go out, deliveries as the replies
			// come back: the pipeline's three in either order.
			ev := rec.events()
			require.Len(t, ev, 5)
			require.Equal(t, []recorded{{"deliver", "m1 #1"}, {"deliver", "m1 #2"}}, ev[:2])
			require.ElementsMatch(t, []recorded{
				{"publish", `k1/0 ItemAdded km1 {"sku":"a"}`}, {"ack", "#2"}, {"deliver", "m2 #1"},
			}, ev[2:])
			// The proxies number deliveries as Redis counts them.
			pending, err := b.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: in, Group: "g", Start: "-", End: "+", Count: 10}).Result()
			require.NoError(t, err)
			require.Len(t, pending, 1)
			require.Equal(t, int64(1), pending[0].RetryCount, "m2, delivered once, is pending")
			in2, err := b.inputs(ctx)
			require.NoError(t, err)
			require.Equal(t, inputs{consumers: 2, pending: 0, ackPending: 1, ackWait: RedisClaimIdle}, in2)
		})
	}
}

// TestRedisProxyDropsAcksAndRefusesPublishes: a dropped XACK is not
// forwarded and the client is told it acked; a refused XADD stores
// nothing and the client gets an error; a lost confirmation stores the
// entry and the client gets an error; inside MULTI too.
func TestRedisProxyDropsAcksAndRefusesPublishes(t *testing.T) {
	b, c, rec := proxied(t, 3)
	ctx := context.Background()
	in, out := b.streams()
	rec.onAck = func(string) verdict { return verdict{drop: true} }
	streams, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c1", Streams: []string{in, ">"}, Count: 2}).Result()
	require.NoError(t, err)
	ids := []string{streams[0].Messages[0].ID, streams[0].Messages[1].ID}
	n, err := c.XAck(ctx, in, "g", ids...).Result()
	require.NoError(t, err)
	require.Equal(t, int64(2), n, "the client is told both were acked")
	in2, err := b.inputs(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, in2.ackPending, "the server got no ack")

	// The claims' min-idle-time is the ack wait.
	_, _, err = c.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: in, Group: "g", Consumer: "c1", MinIdle: 2500 * time.Millisecond, Start: "0-0"}).Result()
	require.NoError(t, err)
	in2, err = b.inputs(ctx)
	require.NoError(t, err)
	require.Equal(t, 2500*time.Millisecond, in2.ackWait)
	// requeue ages the entries: a claim with that idle time takes them.
	tokens := []string{redisToken(in, "g", ids[0], 1), redisToken(in, "g", ids[1], 1)}
	require.True(t, b.requeue(tokens))
	claimed, _, err := c.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: in, Group: "g", Consumer: "c2", MinIdle: 2500 * time.Millisecond, Start: "0-0"}).Result()
	require.NoError(t, err)
	require.Len(t, claimed, 2)
	pending, err := b.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: in, Group: "g", Start: "-", End: "+", Count: 10}).Result()
	require.NoError(t, err)
	for _, p := range pending {
		require.Equal(t, int64(2), p.RetryCount, "requeue counted no delivery; the claim did")
		require.Equal(t, "c2", p.Consumer)
	}

	rec.onPublish = func(output) verdict { return verdict{refuse: true} }
	err = c.XAdd(ctx, &redis.XAddArgs{Stream: out, Values: []any{"id", "o1"}}).Err()
	require.ErrorContains(t, err, "OOM")
	require.Zero(t, b.rdb.XLen(ctx, out).Val(), "a refused publish stores nothing")

	rec.onPublish = func(output) verdict { return verdict{atConfirm: func() verdict { return verdict{refuse: true} }} }
	err = c.XAdd(ctx, &redis.XAddArgs{Stream: out, Values: []any{"id", "o2"}}).Err()
	require.ErrorContains(t, err, "reply to this XADD was lost")
	require.Equal(t, int64(1), b.rdb.XLen(ctx, out).Val(), "a lost confirmation's entry is stored")

	// In a transaction: the refused XADD's element is an error, the
	// dropped XACK's counts as done.
	rec.onPublish = func(output) verdict { return verdict{refuse: true} }
	var add *redis.StringCmd
	var ack *redis.IntCmd
	_, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		add = p.XAdd(ctx, &redis.XAddArgs{Stream: out, Values: []any{"id", "o3"}})
		ack = p.XAck(ctx, in, "g", ids[0])
		return nil
	})
	require.ErrorContains(t, err, "OOM")
	require.ErrorContains(t, add.Err(), "OOM")
	require.Equal(t, int64(1), ack.Val())
	require.Equal(t, int64(1), b.rdb.XLen(ctx, out).Val())
	require.Equal(t, int64(2), b.rdb.XPending(ctx, in, "g").Val().Count)
	var buf bytes.Buffer
	for _, e := range rec.events() {
		fmt.Fprintln(&buf, e.kind, e.what)
	}
	require.Contains(t, buf.String(), "deliver m1 #2", "the claim is the second delivery")
}

// TestRedisStartsAServerOfItsOwn: without a server to use, the runner
// starts redis-server on a free port and stops it when closed.
func TestRedisStartsAServerOfItsOwn(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed")
	}
	b := &redisBroker{}
	require.NoError(t, b.startServer())
	addr := b.u.Host
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	require.NoError(t, rdb.Ping(context.Background()).Err())
	_ = rdb.Close()
	b.close()
	_, err := net.DialTimeout("tcp", addr, time.Second)
	require.Error(t, err, "the server is stopped")
}
