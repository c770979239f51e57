package service

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"
)

// amqpProxy listens for the connections of one consumer process and
// forwards them to the RabbitMQ server, showing deliveries, acks,
// publishes and confirmations to its hooks.
type amqpProxy struct {
	b     *amqpBroker
	ln    net.Listener
	index int
	gen   func() int
	hooks hooks

	mu    sync.Mutex
	conns []*amqpConn
	wg    sync.WaitGroup
}

func newAMQPProxy(b *amqpBroker, index int, gen func() int, h hooks) (*amqpProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("amqp proxy: listen: %w", err)
	}
	p := &amqpProxy{b: b, ln: ln, index: index, gen: gen, hooks: h}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// env is the AMQP_URL the process is given (the server's credentials and
// virtual host, the proxy's address) and the names of its queue and
// exchange.
func (p *amqpProxy) env() []string {
	u := *p.b.url
	u.Host = p.ln.Addr().String()
	return []string{"AMQP_URL=" + u.String(), "AMQP_QUEUE=" + p.b.queue, "AMQP_EXCHANGE=" + p.b.exchange}
}

func (p *amqpProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.b.upstream)
		if err != nil {
			_ = client.Close()
			continue
		}
		c := &amqpConn{proxyConn: proxyConn{index: p.index, gen: p.gen()}, p: p, cli: client, srv: server,
			chans: map[uint16]*amqpChan{}, done: make(chan struct{})}
		p.b.register(c)
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		p.wg.Add(3)
		go func() { defer p.wg.Done(); c.fromClient() }()
		go func() { defer p.wg.Done(); c.fromServer() }()
		go func() { defer p.wg.Done(); c.watch() }()
	}
}

// close stops listening and cuts every connection.
func (p *amqpProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.end()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// idle implements brokerProxy: no confirm-mode publish of the process
// waits for the server's confirmation on an open connection.
func (p *amqpProxy) idle() bool {
	p.mu.Lock()
	conns := slices.Clone(p.conns)
	p.mu.Unlock()
	for _, c := range conns {
		select {
		case <-c.done:
			continue
		default:
		}
		c.mu.Lock()
		busy := false
		for _, st := range c.chans {
			busy = busy || len(st.seqs) > 0
		}
		c.mu.Unlock()
		if busy {
			return false
		}
	}
	return true
}

// amqpConn is one client connection through a proxy.
type amqpConn struct {
	proxyConn
	id       int // numbered by the broker: the first part of a token
	p        *amqpProxy
	cli, srv net.Conn
	cliMu    sync.Mutex // whole frames (or contents) written to cli
	srvMu    sync.Mutex // and to srv
	once     sync.Once
	done     chan struct{} // closed once the connection is finished

	mu     sync.Mutex
	chans  map[uint16]*amqpChan
	ending bool // cut: waiting for the server's connection.close-ok
}

// amqpChan is what the proxy knows of one channel of a connection.
type amqpChan struct {
	unacked map[uint64]amqpDelivery // by delivery tag
	// zombies are the deliveries of the input the channel held when the
	// proxy closed it: the server discards a late ack of them.
	zombies map[uint64]string
	// srvClosing and cliClosing: the proxy closed the channel and waits
	// for the server's close-ok, and for the client's.
	srvClosing, cliClosing bool
	noAck                  map[string]bool // consumer tags of no-ack consumers
	consumes               []bool          // no-ack of consumes awaiting their consume-ok
	getNoAck               bool            // of the last basic.get
	// Publisher confirms: the client's and the server's publish sequence
	// numbers (they differ once the proxy refuses a publish), the
	// client's number of each publish the server has not confirmed, and
	// what the confirmation of some does.
	confirm        bool
	cliSeq, srvSeq uint64
	seqs           map[uint64]uint64
	atConfirm      map[uint64]func() verdict
}

// amqpDelivery is a delivery the client has not settled.
type amqpDelivery struct {
	token string
	input bool // of the input queue (the consumer timeout and the drain count these)
	at    time.Time
}

func newAMQPChan() *amqpChan {
	return &amqpChan{unacked: map[uint64]amqpDelivery{}, zombies: map[uint64]string{}, noAck: map[string]bool{},
		seqs: map[uint64]uint64{}, atConfirm: map[uint64]func() verdict{}}
}

// state returns the channel's state, made on first use; c.mu is held.
func (c *amqpConn) state(ch uint16) *amqpChan {
	st := c.chans[ch]
	if st == nil {
		st = newAMQPChan()
		c.chans[ch] = st
	}
	return st
}

// unacked counts the deliveries of the input the client has not settled.
func (c *amqpConn) unacked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, st := range c.chans {
		for _, d := range st.unacked {
			if d.input {
				n++
			}
		}
		if st.srvClosing { // the server has not put them back yet
			n += len(st.zombies)
		}
	}
	return n
}

func (c *amqpConn) toServer(b []byte) error {
	c.srvMu.Lock()
	defer c.srvMu.Unlock()
	_, err := c.srv.Write(b)
	return err
}

func (c *amqpConn) toClient(b []byte) error {
	c.cliMu.Lock()
	defer c.cliMu.Unlock()
	_, err := c.cli.Write(b)
	return err
}

// end cuts the connection: the client's side is closed, and the server
// is asked to close its side (connection.close); fromServer reads until
// the server's close-ok, by which the server has put back the deliveries
// the connection held, and then finishes. Until then they count as
// unacknowledged, so that the drain never sees them nowhere.
func (c *amqpConn) end() {
	c.once.Do(func() {
		_ = c.cli.Close()
		c.mu.Lock()
		c.ending = true
		c.mu.Unlock()
		_ = c.srv.SetDeadline(time.Now().Add(amqpCloseWait))
		args := binary.BigEndian.AppendUint16(nil, 200)
		args = append(args, shortstrBytes("oncecheck proxy: the process is gone")...)
		args = binary.BigEndian.AppendUint32(args, 0)
		_ = c.toServer(amqpMethodFrame(0, amqpConnectionClose, args))
	})
}

// amqpCloseWait bounds the wait for the server's connection.close-ok.
const amqpCloseWait = 2 * time.Second

// finish closes both sides and forgets the connection.
func (c *amqpConn) finish() {
	c.end()
	_ = c.srv.Close()
	close(c.done)
	c.p.b.unregister(c)
}

// shortstrBytes encodes an AMQP short string.
func shortstrBytes(s string) []byte {
	if len(s) > 255 {
		s = s[:255]
	}
	return append([]byte{byte(len(s))}, s...)
}

// reject gives a delivery back to the server on the client's behalf
// (basic.reject, requeue), when its channel still holds it.
func (c *amqpConn) reject(ch uint16, tag uint64) bool {
	c.mu.Lock()
	st := c.chans[ch]
	if st == nil || st.srvClosing {
		c.mu.Unlock()
		return false
	}
	if _, ok := st.unacked[tag]; !ok {
		c.mu.Unlock()
		return false
	}
	delete(st.unacked, tag)
	c.mu.Unlock()
	return c.toServer(amqpRejectFrame(ch, tag)) == nil
}

// closeChannel closes a channel as the server does on a channel error:
// the server is asked to close it (it puts back the channel's
// unacknowledged deliveries, marked redelivered) and the client is told
// the server closed it, with code and text.
func (c *amqpConn) closeChannel(ch uint16, code uint16, text string) {
	c.mu.Lock()
	st := c.state(ch)
	if st.srvClosing || st.cliClosing {
		c.mu.Unlock()
		return
	}
	st.srvClosing, st.cliClosing = true, true
	for tag, d := range st.unacked {
		if d.input {
			st.zombies[tag] = d.token
		}
	}
	clear(st.unacked)
	c.mu.Unlock()
	_ = c.toServer(amqpCloseFrame(ch, 200, "oncecheck proxy: "+text))
	_ = c.toClient(amqpCloseFrame(ch, code, text))
}

// watch enforces the consumer timeout: a channel holding a delivery of
// the input unacknowledged for longer than AMQPConsumerTimeout is closed
// with PRECONDITION_FAILED, RabbitMQ's words.
func (c *amqpConn) watch() {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		now := time.Now()
		var expired []uint16
		c.mu.Lock()
		for ch, st := range c.chans {
			if st.srvClosing || st.cliClosing {
				continue
			}
			for _, d := range st.unacked {
				if d.input && now.Sub(d.at) > AMQPConsumerTimeout {
					expired = append(expired, ch)
					break
				}
			}
		}
		c.mu.Unlock()
		slices.Sort(expired)
		for _, ch := range expired {
			c.closeChannel(ch, 406, fmt.Sprintf("PRECONDITION_FAILED - delivery acknowledgement on channel %d timed out. Timeout value used: %d ms. This timeout value can be configured, see consumers doc guide to learn more", ch, AMQPConsumerTimeout.Milliseconds()))
		}
	}
}

// amqpContent is a method with content (basic.deliver, basic.get-ok,
// basic.publish) being read: its frames, properties and body.
type amqpContent struct {
	method amqpFrame
	frames []byte
	header bool
	props  amqpProps
	body   []byte
}

// add adds a content header or body frame and reports whether the
// content is complete.
func (ct *amqpContent) add(f amqpFrame) (bool, error) {
	ct.frames = append(ct.frames, f.raw...)
	if f.typ == amqpHeader {
		// A header whose properties do not parse still says the size of
		// the body; the content then has no contract fields.
		ct.props, _ = parseAMQPHeader(f.payload)
		ct.header = true
		return ct.props.bodySize == 0, nil
	}
	if !ct.header {
		return false, fmt.Errorf("amqp proxy: a body frame before the content header on channel %d", f.channel)
	}
	ct.body = append(ct.body, f.payload...)
	return uint64(len(ct.body)) >= ct.props.bodySize, nil
}

// fromServer forwards the server's frames to the client: deliveries go
// to the hooks, confirmations of publishes are renumbered and may be
// turned into refusals, and the frames of a channel the proxy closed
// are dropped until the server's close-ok.
func (c *amqpConn) fromServer() {
	defer c.finish()
	r := bufio.NewReaderSize(c.srv, 64<<10)
	contents := map[uint16]*amqpContent{}
	for {
		f, err := readAMQPFrame(r)
		if err != nil {
			return
		}
		c.mu.Lock()
		ending := c.ending
		c.mu.Unlock()
		if ending {
			if f.method() == amqpConnectionCloseOK || f.method() == amqpConnectionClose {
				return
			}
			continue
		}
		if !c.serverFrame(f, contents) {
			c.end()
		}
	}
}

// serverFrame handles one frame from the server; false cuts the
// connection.
func (c *amqpConn) serverFrame(f amqpFrame, contents map[uint16]*amqpContent) bool {
	if !c.p.hooks.alive(&c.proxyConn) {
		return false
	}
	if ct := contents[f.channel]; ct != nil && (f.typ == amqpHeader || f.typ == amqpBody) {
		complete, err := ct.add(f)
		if err != nil {
			return false
		}
		if complete {
			delete(contents, f.channel)
			return c.deliver(ct)
		}
		return true
	}
	c.mu.Lock()
	st := c.chans[f.channel]
	closing := st != nil && st.srvClosing
	if closing && f.method() == amqpChannelCloseOK {
		st.srvClosing = false
		if !st.cliClosing {
			delete(c.chans, f.channel)
		}
	}
	c.mu.Unlock()
	if closing {
		return true
	}
	switch f.method() {
	case amqpBasicDeliver, amqpBasicGetOK:
		contents[f.channel] = &amqpContent{method: f, frames: f.raw}
		return true
	case amqpBasicAck, amqpBasicNack:
		if handled, ok := c.confirmed(f); handled {
			return ok
		}
	case 60<<16 | 21: // basic.consume-ok: the consumer tag of a consume
		c.consumeOK(f)
	case amqpChannelClose:
		c.gone(f.channel)
	}
	return c.toClient(f.raw) == nil
}

// consumeOK records the consumer tag of a no-ack consume.
func (c *amqpConn) consumeOK(f amqpFrame) {
	tag := f.args().shortstr()
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state(f.channel)
	if len(st.consumes) > 0 {
		if st.consumes[0] {
			st.noAck[tag] = true
		}
		st.consumes = st.consumes[1:]
	}
}

// gone forgets a channel's deliveries as it closes: the server puts them
// back.
func (c *amqpConn) gone(ch uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.chans[ch]; st != nil && !st.srvClosing && !st.cliClosing {
		delete(c.chans, ch)
	}
}

// deliver judges a complete delivery: it reports whether the connection
// goes on.
func (c *amqpConn) deliver(ct *amqpContent) bool {
	ch := ct.method.channel
	args := ct.method.args()
	consumer := ""
	if ct.method.method() == amqpBasicDeliver {
		consumer = args.shortstr()
	}
	tag := args.longlong()
	redelivered := args.octet()&1 != 0
	exchange, key := args.shortstr(), args.shortstr()
	token := fmt.Sprintf("amqp/%d/%d/%d", c.id, ch, tag)
	input := exchange == "" && key == c.p.b.queue
	c.mu.Lock()
	st := c.state(ch)
	if st.srvClosing {
		c.mu.Unlock()
		return true
	}
	noAck := st.noAck[consumer] || consumer == "" && st.getNoAck
	if !noAck {
		st.unacked[tag] = amqpDelivery{token: token, input: input, at: time.Now()}
	}
	c.mu.Unlock()
	if !input {
		return c.toClient(ct.frames) == nil
	}
	count := "1"
	if redelivered {
		count = "2 or more (redelivered)"
	}
	v := c.p.hooks.delivered(&c.proxyConn, delivery{id: ct.props.messageID, count: count, token: token})
	if v.cut {
		return false
	}
	if !v.drop {
		if err := c.toClient(ct.frames); err != nil {
			return false
		}
	}
	if noAck {
		// The server counts a no-ack delivery acknowledged as it sends it.
		c.p.hooks.acked(&c.proxyConn, token, false, "no-ack: acknowledged by the server as it was sent")
	}
	if v.after != nil {
		v.after()
	}
	return true
}

// confirmed handles basic.ack and basic.nack from the server on a channel
// in confirm mode: each publish it confirms is confirmed to the client
// under the client's number, one by one, after the hook waiting for it,
// if any. It reports whether it handled the frame and whether the
// connection goes on.
func (c *amqpConn) confirmed(f amqpFrame) (bool, bool) {
	args := f.args()
	tag := args.longlong()
	multiple := args.octet()&1 != 0
	c.mu.Lock()
	st := c.chans[f.channel]
	if st == nil || !st.confirm {
		c.mu.Unlock()
		return false, true
	}
	var seqs []uint64
	for s := range st.seqs {
		if s == tag || multiple && s <= tag {
			seqs = append(seqs, s)
		}
	}
	slices.Sort(seqs)
	type confirm struct {
		cli uint64
		fn  func() verdict
	}
	cs := make([]confirm, len(seqs))
	for i, s := range seqs {
		cs[i] = confirm{cli: st.seqs[s], fn: st.atConfirm[s]}
		delete(st.seqs, s)
		delete(st.atConfirm, s)
	}
	c.mu.Unlock()
	var out []byte
	var afters []func()
	for _, x := range cs {
		m := f.method()
		if x.fn != nil {
			v := x.fn()
			if v.cut {
				return true, false
			}
			if v.refuse {
				m = amqpBasicNack
			}
			if v.after != nil {
				afters = append(afters, v.after)
			}
		}
		out = append(out, amqpAckFrame(f.channel, m, x.cli)...)
	}
	if len(out) > 0 {
		if err := c.toClient(out); err != nil {
			return true, false
		}
	}
	for _, a := range afters {
		a()
	}
	return true, true
}

// fromClient forwards the client's frames to the server: acks go to the
// hooks, publishes to the output exchange too, and the frames of a
// channel the proxy closed are dropped (a late ack is reported as the
// server discarding it) until the client's close-ok.
func (c *amqpConn) fromClient() {
	defer c.end()
	defer c.cli.Close()
	r := bufio.NewReaderSize(c.cli, 64<<10)
	head := make([]byte, len(amqpProtocolHeader))
	if _, err := io.ReadFull(r, head); err != nil || c.toServer(head) != nil {
		return
	}
	contents := map[uint16]*amqpContent{}
	for {
		f, err := readAMQPFrame(r)
		if err != nil || !c.p.hooks.alive(&c.proxyConn) {
			return
		}
		c.mu.Lock()
		st := c.chans[f.channel]
		closing := st != nil && st.cliClosing
		c.mu.Unlock()
		if closing {
			delete(contents, f.channel)
			if !c.whileClosing(f) {
				return
			}
			continue
		}
		if ct := contents[f.channel]; ct != nil && (f.typ == amqpHeader || f.typ == amqpBody) {
			complete, err := ct.add(f)
			if err != nil {
				return
			}
			if complete {
				delete(contents, f.channel)
				if !c.publish(ct) {
					return
				}
			}
			continue
		}
		switch f.method() {
		case amqpBasicPublish:
			contents[f.channel] = &amqpContent{method: f, frames: f.raw}
			continue
		case amqpBasicAck, amqpBasicNack, amqpBasicReject:
			if !c.settle(f) {
				return
			}
			continue
		case amqpConfirmSelect:
			c.mu.Lock()
			c.state(f.channel).confirm = true
			c.mu.Unlock()
		case amqpChannelOpen:
			c.mu.Lock()
			c.chans[f.channel] = newAMQPChan()
			c.mu.Unlock()
		case amqpChannelClose, amqpChannelCloseOK:
			c.gone(f.channel)
		case 60<<16 | 20: // basic.consume
			a := f.args()
			a.short()
			a.shortstr()
			a.shortstr()
			noAck := a.octet()&2 != 0
			c.mu.Lock()
			st := c.state(f.channel)
			st.consumes = append(st.consumes, noAck)
			c.mu.Unlock()
		case 60<<16 | 70: // basic.get
			a := f.args()
			a.short()
			a.shortstr()
			noAck := a.octet()&1 != 0
			c.mu.Lock()
			c.state(f.channel).getNoAck = noAck
			c.mu.Unlock()
		}
		if err := c.toServer(f.raw); err != nil {
			return
		}
	}
}

// whileClosing handles a client frame on a channel the proxy closed: the
// client's close-ok (or its own close, crossing the proxy's) ends the
// close; an ack is discarded, as the server discards any method but a
// close on a closing channel, and reported so; the rest is dropped.
func (c *amqpConn) whileClosing(f amqpFrame) bool {
	ch := f.channel
	switch f.method() {
	case amqpChannelCloseOK, amqpChannelClose:
		c.mu.Lock()
		st := c.state(ch)
		st.cliClosing = false
		if !st.srvClosing {
			delete(c.chans, ch)
		}
		c.mu.Unlock()
		if f.method() == amqpChannelClose {
			return c.toClient(amqpMethodFrame(ch, amqpChannelCloseOK, nil)) == nil
		}
	case amqpBasicAck, amqpBasicNack, amqpBasicReject:
		args := f.args()
		tag := args.longlong()
		multiple := f.method() != amqpBasicReject && args.octet()&1 != 0
		c.mu.Lock()
		st := c.state(ch)
		var tokens []string
		var tags []uint64
		for t := range st.zombies {
			if t == tag || multiple && (tag == 0 || t <= tag) {
				tags = append(tags, t)
			}
		}
		slices.Sort(tags)
		for _, t := range tags {
			tokens = append(tokens, st.zombies[t])
			delete(st.zombies, t)
		}
		c.mu.Unlock()
		for _, t := range tokens {
			v := c.p.hooks.acked(&c.proxyConn, t, true, fmt.Sprintf("late: the server discards it, channel %d was closed at the consumer timeout and the copy went back to the queue", ch))
			if v.cut {
				return false
			}
		}
	}
	return true
}

// settle judges basic.ack, basic.nack and basic.reject from the client:
// each delivery it settles (every earlier one of the channel too when
// multiple is set) goes to the hooks; when a hook drops the ack of one,
// the others are settled one by one. It reports whether the connection
// goes on.
func (c *amqpConn) settle(f amqpFrame) bool {
	ch, m := f.channel, f.method()
	args := f.args()
	tag := args.longlong()
	bits := args.octet()
	multiple := m != amqpBasicReject && bits&1 != 0
	requeue := m == amqpBasicNack && bits&2 != 0 || m == amqpBasicReject && bits&1 != 0
	c.mu.Lock()
	st := c.state(ch)
	var tags []uint64
	for t := range st.unacked {
		if t == tag || multiple && (tag == 0 || t <= tag) {
			tags = append(tags, t)
		}
	}
	slices.Sort(tags)
	tokens := make([]string, len(tags))
	for i, t := range tags {
		tokens[i] = st.unacked[t].token
	}
	c.mu.Unlock()
	if len(tags) == 0 { // an unknown tag: the server closes the channel
		return c.toServer(f.raw) == nil
	}
	detail := ""
	switch m {
	case amqpBasicNack:
		detail = fmt.Sprintf("basic.nack requeue=%t", requeue)
	case amqpBasicReject:
		detail = fmt.Sprintf("basic.reject requeue=%t", requeue)
	}
	var afters []func()
	dropped := map[uint64]bool{}
	for i, t := range tags {
		v := c.p.hooks.acked(&c.proxyConn, tokens[i], m != amqpBasicAck, detail)
		if v.cut {
			return false
		}
		if v.drop {
			dropped[t] = true
		}
		if v.after != nil {
			afters = append(afters, v.after)
		}
	}
	// A delivery the consumer timeout took back while a hook held the ack
	// (a pause) is no longer the channel's: the server would discard it.
	var out []byte
	c.mu.Lock()
	st = c.state(ch)
	kept := 0
	for _, t := range tags {
		if _, ok := st.unacked[t]; !ok || dropped[t] || st.cliClosing {
			continue
		}
		delete(st.unacked, t)
		kept++
		if m == amqpBasicReject {
			out = append(out, amqpMethodFrame(ch, m, append(be64(t), bits&1))...)
		} else {
			out = append(out, amqpMethodFrame(ch, m, append(be64(t), bits&^1))...)
		}
	}
	c.mu.Unlock()
	if kept == len(tags) {
		out = f.raw // as sent
	}
	if len(out) > 0 {
		if err := c.toServer(out); err != nil {
			return false
		}
	}
	for _, a := range afters {
		a()
	}
	return true
}

// publish judges a complete publish: one to the output exchange goes to
// the hooks, which may refuse it (a basic.nack to a publisher in confirm
// mode, else the channel closed) or wait for its confirmation. It reports
// whether the connection goes on.
func (c *amqpConn) publish(ct *amqpContent) bool {
	ch := ct.method.channel
	args := ct.method.args()
	args.short()
	exchange, key := args.shortstr(), args.shortstr()
	c.mu.Lock()
	st := c.state(ch)
	confirm := st.confirm
	var cli uint64
	if confirm {
		st.cliSeq++
		cli = st.cliSeq
	}
	c.mu.Unlock()
	var v verdict
	if exchange == c.p.b.exchange {
		typ := key
		if typ == "" {
			typ = ct.props.typ
		}
		v = c.p.hooks.published(&c.proxyConn, output{id: ct.props.messageID, typ: typ, cause: ct.props.headers[HeaderCause], body: ct.body, confirmed: confirm})
	}
	switch {
	case v.cut:
		return false
	case v.refuse && confirm:
		if err := c.toClient(amqpAckFrame(ch, amqpBasicNack, cli)); err != nil {
			return false
		}
	case v.refuse:
		c.closeChannel(ch, 406, "PRECONDITION_FAILED - oncecheck: publish refused (publish-failure fault)")
	case v.drop:
	default:
		if confirm {
			c.mu.Lock()
			st := c.state(ch)
			st.srvSeq++
			st.seqs[st.srvSeq] = cli
			if v.atConfirm != nil {
				st.atConfirm[st.srvSeq] = v.atConfirm
			}
			c.mu.Unlock()
		}
		if err := c.toServer(ct.frames); err != nil {
			return false
		}
	}
	if v.after != nil {
		v.after()
	}
	return true
}

// be64 is a big-endian delivery tag.
func be64(v uint64) []byte {
	return []byte{byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}
