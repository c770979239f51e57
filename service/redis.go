package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oncecheck/oncecheck/model"
)

// The fields of an input entry and of an output entry on Redis Streams
// (docs/service-mode-redis.md).
const (
	RedisFieldID        = "id"
	RedisFieldKey       = "key"
	RedisFieldType      = "type"
	RedisFieldAggregate = "aggregate"
	RedisFieldPosition  = "position"
	RedisFieldPayload   = "payload"
	RedisFieldCause     = "cause"
)

// RedisClaimIdle is the claim idle time oncecheck gives a Redis service
// (REDIS_CLAIM_IDLE_MS): the service claims pending entries idle longer
// than that. A service that claims with another min-idle-time is read
// from its XAUTOCLAIM and XCLAIM commands.
const RedisClaimIdle = time.Second

// redisDefaultAddr is the server tried when no URL is given.
const redisDefaultAddr = "127.0.0.1:6379"

// redisBroker is a Redis server (external, or a redis-server started for
// the runner) and oncecheck's own client of it. Each run names its
// streams with a prefix of its own, so runners sharing a server do not
// meet.
type redisBroker struct {
	u      *url.URL // the server, as redis://[user:pass@]host:port[/db]
	rdb    *redis.Client
	server *exec.Cmd // a redis-server started for the runner, or nil
	dir    string

	mu        sync.Mutex
	prefix    string         // of the current run's keys: "oncecheck:<hex>:"
	counts    map[string]int // deliveries of each entry, by stream, group and id
	tokens    map[string]redisEntry
	claimIdle time.Duration // the longest min-idle-time of the run's claims
}

// redisEntry is a delivery of an entry, as a token names it.
type redisEntry struct {
	stream, group, id string
	n                 int
}

// startRedis connects to the server of rawURL ("host:port" or a redis://
// URL); with none, to 127.0.0.1:6379 when it answers, else to a
// redis-server started on a free port.
func startRedis(rawURL string) (*redisBroker, error) {
	b := &redisBroker{}
	if rawURL == "" {
		if c, err := net.DialTimeout("tcp", redisDefaultAddr, time.Second); err == nil {
			_ = c.Close()
			rawURL = redisDefaultAddr
		} else if err := b.startServer(); err != nil {
			return nil, err
		}
	}
	if b.u == nil {
		if !strings.Contains(rawURL, "://") {
			rawURL = "redis://" + rawURL
		}
		u, err := url.Parse(rawURL)
		if err != nil || u.Scheme != "redis" || u.Host == "" {
			return nil, fmt.Errorf("redis: server %q: want host:port or redis://host:port[/db]", rawURL)
		}
		b.u = u
	}
	opts, err := redis.ParseURL(b.u.String())
	if err != nil {
		b.close()
		return nil, fmt.Errorf("redis: server %s: %w", b.u.Redacted(), err)
	}
	b.rdb = redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.rdb.Ping(ctx).Err(); err != nil {
		b.close()
		return nil, fmt.Errorf("redis: connect to %s: %w", b.u.Redacted(), err)
	}
	return b, nil
}

// startServer starts Debian's redis-server on a free port, without
// persistence, in a temporary directory.
func (b *redisBroker) startServer() error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return errors.New("redis: no server: nothing answers on 127.0.0.1:6379, no --broker-url ($ONCECHECK_REDIS), and redis-server is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("redis: a free port: %w", err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	_ = ln.Close()
	if b.dir, err = os.MkdirTemp("", "oncecheck-redis-*"); err != nil {
		return fmt.Errorf("redis: temporary directory: %w", err)
	}
	b.server = exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--dir", b.dir, "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "")
	if err := b.server.Start(); err != nil {
		b.server = nil
		b.close()
		return fmt.Errorf("redis: start %s: %w", bin, err)
	}
	addr := net.JoinHostPort("127.0.0.1", port)
	for range 100 {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			b.u = &url.URL{Scheme: "redis", Host: addr}
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.close()
	return fmt.Errorf("redis: the redis-server started on %s does not answer", addr)
}

// in and out are the current run's streams; b.mu is held.
func (b *redisBroker) in() string  { return b.prefix + "in" }
func (b *redisBroker) out() string { return b.prefix + "out" }

// reset deletes the previous run's streams, with their groups, and names
// this run's.
func (b *redisBroker) reset(ctx context.Context) error {
	var k [6]byte
	_, _ = rand.Read(k[:])
	b.mu.Lock()
	old := []string{b.in(), b.out()}
	hadOld := b.prefix != ""
	b.prefix = "oncecheck:" + hex.EncodeToString(k[:]) + ":"
	b.counts, b.tokens, b.claimIdle = map[string]int{}, map[string]redisEntry{}, 0
	b.mu.Unlock()
	if hadOld {
		if err := b.rdb.Del(ctx, old...).Err(); err != nil {
			return fmt.Errorf("redis: delete %s: %w", strings.Join(old, ", "), err)
		}
	}
	return nil
}

// send adds a workload copy to the input stream.
func (b *redisBroker) send(ctx context.Context, m model.Message, ordered bool) error {
	b.mu.Lock()
	in := b.in()
	b.mu.Unlock()
	values := []any{RedisFieldID, m.ID, RedisFieldKey, m.Key, RedisFieldType, m.Type, RedisFieldAggregate, m.Aggregate}
	if ordered {
		values = append(values, RedisFieldPosition, strconv.FormatInt(m.Position, 10))
	}
	values = append(values, RedisFieldPayload, string(m.Payload))
	if err := b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: in, Values: values}).Err(); err != nil {
		return fmt.Errorf("redis: XADD %s %s: %w", in, m.ID, err)
	}
	return nil
}

// inputs reads the groups of the input stream: their consumers, their
// pending entries lists, and the entries after each group's last
// delivered id.
func (b *redisBroker) inputs(ctx context.Context) (inputs, error) {
	b.mu.Lock()
	in, wait := b.in(), b.claimIdle
	b.mu.Unlock()
	if wait <= 0 {
		wait = RedisClaimIdle
	}
	res := inputs{ackWait: wait}
	groups, err := b.rdb.XInfoGroups(ctx, in).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			return res, nil
		}
		return res, fmt.Errorf("redis: XINFO GROUPS %s: %w", in, err)
	}
	for _, g := range groups {
		res.consumers += int(g.Consumers)
		res.ackPending += int(g.Pending)
		// Lag is not known after deletions: count the entries.
		after, err := b.rdb.XRangeN(ctx, in, "("+g.LastDeliveredID, "+", 100000).Result()
		if err != nil {
			return res, fmt.Errorf("redis: XRANGE %s after %s: %w", in, g.LastDeliveredID, err)
		}
		res.pending += len(after)
	}
	return res, nil
}

// requeueScript makes a pending entry idle for an hour, leaving it to its
// consumer, when its delivery count is still the token's: the next claim
// of any consumer takes it, as it would once its idle time passed.
var requeueScript = redis.NewScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 1 and tonumber(p[1][4]) == tonumber(ARGV[3]) then
  redis.call('XCLAIM', KEYS[1], ARGV[1], p[1][2], 0, ARGV[2], 'IDLE', 3600000, 'JUSTID')
  return 1
end
return 0`)

// requeue makes the entries of the tokens claimable at once: Redis has no
// request that gives an entry back, so the entry's idle time is set past
// any claim idle time (XCLAIM to its own consumer with IDLE and JUSTID,
// which does not count a delivery).
func (b *redisBroker) requeue(tokens []string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, t := range tokens {
		b.mu.Lock()
		e, ok := b.tokens[t]
		b.mu.Unlock()
		if ok {
			_ = requeueScript.Run(ctx, b.rdb, []string{e.stream}, e.group, e.id, e.n).Err()
		}
	}
	return true
}

// delivered counts a delivery of entry id of stream to group and returns
// its number and token.
func (b *redisBroker) delivered(stream, group, id string) (int, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := stream + "\x00" + group + "\x00" + id
	b.counts[k]++
	n := b.counts[k]
	token := redisToken(stream, group, id, n)
	b.tokens[token] = redisEntry{stream: stream, group: group, id: id, n: n}
	return n, token
}

// deliveries returns how many deliveries of entry id of stream to group
// the proxies saw.
func (b *redisBroker) deliveries(stream, group, id string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.counts[stream+"\x00"+group+"\x00"+id]
}

// redisToken names delivery n of an entry: what its XACK is matched to.
func redisToken(stream, group, id string, n int) string {
	return fmt.Sprintf("%s/%s/%s#%d", stream, group, id, n)
}

// claimed notes the min-idle-time of a service's claim.
func (b *redisBroker) claimed(idle time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.claimIdle = max(b.claimIdle, idle)
}

// streams returns the current run's input and output streams.
func (b *redisBroker) streams() (in, out string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.in(), b.out()
}

// proxy starts a RESP proxy in front of the server.
func (b *redisBroker) proxy(index int, gen func() int, h hooks) (brokerProxy, error) {
	return newRedisProxy(b, index, gen, h)
}

func (b *redisBroker) input() string {
	in, _ := b.streams()
	return in
}

func (b *redisBroker) close() {
	if b.rdb != nil {
		b.mu.Lock()
		keys := []string{b.in(), b.out()}
		hadKeys := b.prefix != ""
		b.mu.Unlock()
		if hadKeys {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = b.rdb.Del(ctx, keys...).Err()
			cancel()
		}
		_ = b.rdb.Close()
	}
	if b.server != nil && b.server.Process != nil {
		_ = b.server.Process.Kill()
		_ = b.server.Wait()
	}
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}
