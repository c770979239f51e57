package service

import (
	"bufio"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// redisProxy listens for the connections of one consumer process and
// forwards them to the Redis server, reading the commands (arrays of bulk
// strings) and the replies (every RESP2 and RESP3 type): XREADGROUP,
// XAUTOCLAIM and XCLAIM replies of the input stream are deliveries, XACKs
// of it are acks, XADDs to the output stream are publishes.
type redisProxy struct {
	b     *redisBroker
	ln    net.Listener
	index int
	gen   func() int
	hooks hooks

	mu     sync.Mutex
	conns  []net.Conn
	rconns []*redisConn
	latest map[string]int // the number of the last delivery of each entry to this process
	wg     sync.WaitGroup
}

func newRedisProxy(b *redisBroker, index int, gen func() int, h hooks) (*redisProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("redis proxy: listen: %w", err)
	}
	p := &redisProxy{b: b, ln: ln, index: index, gen: gen, hooks: h, latest: map[string]int{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// env is what the process finds in its environment: REDIS_URL (the
// proxy, with the server's credentials and database), the streams of the
// run, and the claim idle time.
func (p *redisProxy) env() []string {
	u := *p.b.u
	u.Host = p.ln.Addr().String()
	in, out := p.b.streams()
	return []string{
		"REDIS_URL=" + u.String(),
		"ONCECHECK_IN_STREAM=" + in,
		"ONCECHECK_OUT_STREAM=" + out,
		"REDIS_CLAIM_IDLE_MS=" + strconv.FormatInt(RedisClaimIdle.Milliseconds(), 10),
	}
}

// redisConn is one client connection through the proxy: the replies it
// waits for, in the order of its commands, and the commands queued in a
// MULTI transaction.
type redisConn struct {
	proxyConn
	// publishing counts the XADDs of outputs forwarded whose reply has
	// not come back.
	publishing atomic.Int32
	replies    chan redisReply
	done       chan struct{}
	multi      bool
	queued     []redisReply
}

// redisReply is what the proxy does with the server's reply to one
// command: handle (nil: forward it as is) returns what to send instead,
// whether to cut the connection, and what to run after.
type redisReply struct {
	handle func(v respValue, raw []byte) redisAction
}

// redisAction is what the proxy does with a command or a reply: send out
// instead of what came (nil: what came), cut the connection (a dead
// process), then run after.
type redisAction struct {
	out   []byte
	cut   bool
	after []func()
}

func (a *redisAction) add(v verdict) {
	a.cut = a.cut || v.cut
	if v.after != nil {
		a.after = append(a.after, v.after)
	}
}

func (p *redisProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.b.u.Host)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		c := &redisConn{proxyConn: proxyConn{index: p.index, gen: p.gen()}, replies: make(chan redisReply, 4096), done: make(chan struct{})}
		p.mu.Lock()
		p.rconns = append(p.rconns, c)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.commands(c, client, server)
		go p.serverReplies(c, client, server)
	}
}

// commands forwards the client's commands to the server, judging each,
// and queues what to do with its reply.
func (p *redisProxy) commands(c *redisConn, client, server net.Conn) {
	defer p.wg.Done()
	defer close(c.done)
	defer client.Close()
	defer server.Close()
	rr := &respReader{r: bufio.NewReaderSize(client, 64<<10)}
	for {
		v, raw, err := rr.read()
		if err != nil {
			return
		}
		if !p.hooks.alive(&c.proxyConn) {
			return
		}
		args := make([]string, 0, len(v.elems))
		for _, e := range v.elems {
			args = append(args, e.text())
		}
		name := ""
		if len(args) > 0 {
			name = strings.ToUpper(args[0])
		}
		out, reply, a := p.command(c, name, args)
		if a.cut {
			for _, f := range a.after {
				f()
			}
			return
		}
		switch {
		case name == "MULTI":
			c.multi, c.queued = true, nil
		case name == "DISCARD":
			c.multi, c.queued = false, nil
		case name == "EXEC":
			queued := c.queued
			c.multi, c.queued = false, nil
			reply = redisReply{handle: func(v respValue, raw []byte) redisAction { return execReply(queued, v, raw) }}
		case c.multi:
			c.queued = append(c.queued, reply)
			reply = redisReply{} // +QUEUED
		}
		select {
		case c.replies <- reply:
		case <-c.done:
			return
		}
		if out == nil {
			out = raw
		}
		if _, err := server.Write(out); err != nil {
			return
		}
		for _, f := range a.after {
			f()
		}
	}
}

// execReply applies the reply handlers of the commands a transaction
// queued to the elements of EXEC's reply.
func execReply(queued []redisReply, v respValue, raw []byte) redisAction {
	var res redisAction
	if v.kind != '*' || v.null || len(v.elems) != len(queued) {
		return res
	}
	parts := make([][]byte, len(v.elems))
	changed := false
	for i, e := range v.elems {
		parts[i] = raw[e.start:e.end]
		if queued[i].handle == nil {
			continue
		}
		a := queued[i].handle(e, parts[i])
		if a.out != nil {
			parts[i], changed = a.out, true
		}
		res.cut = res.cut || a.cut
		res.after = append(res.after, a.after...)
	}
	if changed {
		res.out = respArray(parts)
	}
	return res
}

// serverReplies forwards the server's replies to the client, each handled
// as the command it answers said.
func (p *redisProxy) serverReplies(c *redisConn, client, server net.Conn) {
	defer p.wg.Done()
	defer client.Close()
	defer server.Close()
	rr := &respReader{r: bufio.NewReaderSize(server, 64<<10)}
	for {
		v, raw, err := rr.read()
		if err != nil {
			return
		}
		if !p.hooks.alive(&c.proxyConn) {
			return
		}
		var a redisAction
		if v.kind != '>' { // a push (RESP3) answers no command
			var r redisReply
			select {
			case r = <-c.replies:
			case <-c.done:
				return
			}
			if r.handle != nil {
				a = r.handle(v, raw)
			}
		}
		out := raw
		if a.out != nil {
			out = a.out
		}
		if !a.cut {
			if _, err := client.Write(out); err != nil {
				return
			}
		}
		for _, f := range a.after {
			f()
		}
		if a.cut {
			return
		}
	}
}

// command judges one command: what to forward instead (nil: the command),
// what to do with its reply, and the action on the command itself.
func (p *redisProxy) command(c *redisConn, name string, args []string) ([]byte, redisReply, redisAction) {
	in, out := p.b.streams()
	switch name {
	case "XREADGROUP":
		// XREADGROUP GROUP group consumer [COUNT n] [BLOCK ms] [NOACK] STREAMS key... id...
		if len(args) < 4 || !strings.EqualFold(args[1], "GROUP") {
			break
		}
		group := args[2]
		return nil, redisReply{handle: func(v respValue, _ []byte) redisAction {
			return p.deliveries(c, in, group, readGroupEntries(v))
		}}, redisAction{}
	case "XAUTOCLAIM", "XCLAIM":
		// XAUTOCLAIM key group consumer min-idle-time start [COUNT n] [JUSTID]
		// XCLAIM key group consumer min-idle-time id... [IDLE ms] ... [JUSTID]
		if len(args) < 5 || args[1] != in {
			break
		}
		if ms, err := strconv.ParseInt(args[4], 10, 64); err == nil {
			p.b.claimed(time.Duration(ms) * time.Millisecond)
		}
		for _, a := range args[5:] {
			if strings.EqualFold(a, "JUSTID") { // ids only: no delivery, no count
				return nil, redisReply{}, redisAction{}
			}
		}
		group, auto := args[2], name == "XAUTOCLAIM"
		return nil, redisReply{handle: func(v respValue, _ []byte) redisAction {
			if auto {
				if !v.aggregate() || len(v.elems) < 2 {
					return redisAction{}
				}
				v = v.elems[1]
			}
			return p.deliveries(c, in, group, streamEntries(in, v))
		}}, redisAction{}
	case "XACK":
		// XACK key group id...
		if len(args) < 4 || args[1] != in {
			break
		}
		return p.acks(c, args)
	case "XADD":
		if len(args) < 3 || args[1] != out {
			break
		}
		return p.publish(c, args)
	}
	return nil, redisReply{}, redisAction{}
}

// redisStreamEntry is an entry of a stream in a reply.
type redisStreamEntry struct {
	stream, id string
	fields     map[string]string // nil: the entry was deleted
}

// readGroupEntries reads XREADGROUP's reply: an array (RESP2) or a map
// (RESP3) of streams and their entries, or null.
func readGroupEntries(v respValue) []redisStreamEntry {
	if !v.aggregate() {
		return nil
	}
	var res []redisStreamEntry
	if v.kind == '%' {
		for i := 0; i+1 < len(v.elems); i += 2 {
			res = append(res, streamEntries(v.elems[i].text(), v.elems[i+1])...)
		}
		return res
	}
	for _, s := range v.elems {
		if s.aggregate() && len(s.elems) == 2 {
			res = append(res, streamEntries(s.elems[0].text(), s.elems[1])...)
		}
	}
	return res
}

// streamEntries reads an array of entries: each its id and its fields
// and values (an array, or a map in RESP3).
func streamEntries(stream string, v respValue) []redisStreamEntry {
	if !v.aggregate() {
		return nil
	}
	var res []redisStreamEntry
	for _, e := range v.elems {
		if !e.aggregate() || len(e.elems) != 2 {
			continue
		}
		en := redisStreamEntry{stream: stream, id: e.elems[0].text()}
		if f := e.elems[1]; f.aggregate() {
			en.fields = map[string]string{}
			for i := 0; i+1 < len(f.elems); i += 2 {
				en.fields[f.elems[i].text()] = f.elems[i+1].text()
			}
		}
		res = append(res, en)
	}
	return res
}

// deliveries reports the entries of the input stream a reply delivers.
func (p *redisProxy) deliveries(c *redisConn, in, group string, entries []redisStreamEntry) redisAction {
	var a redisAction
	for _, e := range entries {
		if e.stream != in || e.fields == nil {
			continue
		}
		n, token := p.b.delivered(in, group, e.id)
		p.mu.Lock()
		p.latest[in+"\x00"+group+"\x00"+e.id] = n
		p.mu.Unlock()
		a.add(p.hooks.delivered(&c.proxyConn, delivery{id: e.fields[RedisFieldID], count: strconv.Itoa(n), token: token}))
		if a.cut {
			break
		}
	}
	return a
}

// acks reports the ids an XACK names, each as the ack of the last
// delivery of its entry to this process. The ids whose ack the run drops
// are taken out of the command (a PING goes instead when none is left),
// and the reply counts them as acknowledged.
func (p *redisProxy) acks(c *redisConn, args []string) ([]byte, redisReply, redisAction) {
	stream, group := args[1], args[2]
	var a redisAction
	keep := []string{args[0], stream, group}
	dropped := 0
	for _, id := range args[3:] {
		p.mu.Lock()
		n := p.latest[stream+"\x00"+group+"\x00"+id]
		p.mu.Unlock()
		if n == 0 { // an entry this process was not given: not ours to judge
			keep = append(keep, id)
			continue
		}
		detail := ""
		if now := p.b.deliveries(stream, group, id); now > n {
			detail = fmt.Sprintf("a late XACK: the entry was delivered again since (delivery %d), and Redis takes an XACK from any consumer of the group", now)
		}
		v := p.hooks.acked(&c.proxyConn, redisToken(stream, group, id, n), false, detail)
		a.add(v)
		if a.cut {
			return nil, redisReply{}, a
		}
		if v.drop {
			dropped++
			continue
		}
		keep = append(keep, id)
	}
	if dropped == 0 {
		return nil, redisReply{}, a
	}
	out := respCommand("PING")
	if len(keep) > 3 {
		out = respCommand(keep...)
	}
	return out, redisReply{handle: func(v respValue, _ []byte) redisAction {
		n := 0
		if v.kind == ':' {
			n, _ = strconv.Atoi(v.text())
		}
		return redisAction{out: respInt(n + dropped)}
	}}, a
}

// The error replies a publish-failure fault answers an XADD with.
const (
	redisPublishRefused = "OOM command not allowed when used memory > 'maxmemory' (oncecheck: publish refused, publish-failure fault)"
	redisConfirmLost    = "ERR oncecheck: the reply to this XADD was lost (publish-failure fault: the entry was added)"
)

// publish reports an XADD to the output stream.
func (p *redisProxy) publish(c *redisConn, args []string) ([]byte, redisReply, redisAction) {
	// XADD key [NOMKSTREAM] [MAXLEN|MINID [=|~] threshold [LIMIT count]] id field value...
	i := 2
	for i < len(args) {
		switch strings.ToUpper(args[i]) {
		case "NOMKSTREAM":
			i++
			continue
		case "MAXLEN", "MINID":
			i++
			if i < len(args) && (args[i] == "=" || args[i] == "~") {
				i++
			}
			i++
			if i < len(args) && strings.EqualFold(args[i], "LIMIT") {
				i += 2
			}
			continue
		}
		break
	}
	fields := map[string]string{}
	for j := i + 1; j+1 < len(args); j += 2 {
		fields[args[j]] = args[j+1]
	}
	v := p.hooks.published(&c.proxyConn, output{
		id: fields[RedisFieldID], typ: fields[RedisFieldType], cause: fields[RedisFieldCause],
		body: []byte(fields[RedisFieldPayload]), confirmed: true,
	})
	var a redisAction
	a.add(v)
	if a.cut {
		return nil, redisReply{}, a
	}
	if v.refuse {
		return respCommand("PING"), redisReply{handle: func(respValue, []byte) redisAction {
			return redisAction{out: respError(redisPublishRefused)}
		}}, a
	}
	c.publishing.Add(1)
	if v.atConfirm == nil {
		return nil, redisReply{handle: func(respValue, []byte) redisAction {
			c.publishing.Add(-1)
			return redisAction{}
		}}, a
	}
	confirm := v.atConfirm
	return nil, redisReply{handle: func(respValue, []byte) redisAction {
		c.publishing.Add(-1)
		cv := confirm()
		var ra redisAction
		ra.add(cv)
		if cv.refuse {
			ra.out = respError(redisConfirmLost)
		}
		return ra
	}}, a
}

// idle implements brokerProxy: no XADD of an output waits for its reply
// on an open connection.
func (p *redisProxy) idle() bool {
	p.mu.Lock()
	conns := slices.Clone(p.rconns)
	p.mu.Unlock()
	for _, c := range conns {
		select {
		case <-c.done:
			continue
		default:
		}
		if c.publishing.Load() > 0 {
			return false
		}
	}
	return true
}

// close stops listening and cuts every connection.
func (p *redisProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
