package service

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
)

// natsFrame is one operation of the NATS client protocol: its control line
// and, for a message (MSG, HMSG, PUB, HPUB), its headers and body.
type natsFrame struct {
	op      string // upper case: MSG, HMSG, PUB, HPUB, INFO, PING, ...
	subject string
	sid     string // MSG and HMSG only
	reply   string
	header  textproto.MIMEHeader // HMSG and HPUB only
	body    []byte
	raw     []byte // the whole frame as read, forwarded as is
}

// readFrame reads one operation.
func readFrame(r *bufio.Reader) (natsFrame, error) {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return natsFrame{}, err
	}
	f := natsFrame{raw: line}
	fields := strings.Fields(string(line))
	if len(fields) == 0 {
		return f, nil
	}
	f.op = strings.ToUpper(fields[0])
	args := fields[1:]
	var hdrLen, total int
	switch f.op {
	case "MSG", "PUB", "HMSG", "HPUB":
	default:
		return f, nil
	}
	headers := f.op == "HMSG" || f.op == "HPUB"
	sizes := 1
	if headers {
		sizes = 2
	}
	fixed := 1 // subject
	if f.op == "MSG" || f.op == "HMSG" {
		fixed = 2 // subject, sid
	}
	switch len(args) {
	case fixed + sizes:
	case fixed + 1 + sizes:
		f.reply = args[fixed]
	default:
		return f, fmt.Errorf("nats proxy: malformed %s line %q", f.op, strings.TrimSpace(string(line)))
	}
	f.subject = args[0]
	if fixed == 2 {
		f.sid = args[1]
	}
	if total, err = strconv.Atoi(args[len(args)-1]); err != nil || total < 0 {
		return f, fmt.Errorf("nats proxy: malformed size in %q", strings.TrimSpace(string(line)))
	}
	if headers {
		if hdrLen, err = strconv.Atoi(args[len(args)-2]); err != nil || hdrLen < 0 || hdrLen > total {
			return f, fmt.Errorf("nats proxy: malformed header size in %q", strings.TrimSpace(string(line)))
		}
	}
	payload := make([]byte, total+2)
	if _, err := io.ReadFull(r, payload); err != nil {
		return f, err
	}
	f.raw = append(f.raw, payload...)
	f.body = payload[hdrLen:total]
	if headers {
		f.header = parseHeader(payload[:hdrLen])
	}
	return f, nil
}

// parseHeader reads a NATS header block ("NATS/1.0\r\nKey: value\r\n\r\n").
func parseHeader(b []byte) textproto.MIMEHeader {
	h := textproto.MIMEHeader{}
	lines := bytes.Split(b, []byte("\r\n"))
	for _, l := range lines[1:] {
		k, v, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			continue
		}
		// NATS keeps header names as sent; the contract's names are
		// canonical already, and CanonicalMIMEHeaderKey matches both.
		key := textproto.CanonicalMIMEHeaderKey(string(bytes.TrimSpace(k)))
		h[key] = append(h[key], string(bytes.TrimSpace(v)))
	}
	return h
}

// natsConn is one client connection through a NATS proxy: its
// subscriptions, and the publishes whose confirmation a fault waits for.
type natsConn struct {
	proxyConn
	mu       sync.Mutex
	subs     map[string]string         // subject -> sid
	confirms map[string]func() verdict // reply inbox -> what its confirmation does
	// inflight are the reply inboxes of confirmed publishes of outputs
	// whose confirmation has not come back yet.
	inflight map[string]bool
	closed   bool
}

// sid returns the client's subscription that a message to subject
// reaches: an exact subject, or a wildcard one ("_INBOX.abc.*"); c.mu is
// held.
func (c *natsConn) sid(subject string) (string, bool) {
	if sid, ok := c.subs[subject]; ok {
		return sid, true
	}
	for sub, sid := range c.subs {
		if prefix, ok := strings.CutSuffix(sub, ".*"); ok && strings.HasPrefix(subject, prefix+".") && !strings.Contains(subject[len(prefix)+1:], ".") {
			return sid, true
		}
		if prefix, ok := strings.CutSuffix(sub, ".>"); ok && strings.HasPrefix(subject, prefix+".") {
			return sid, true
		}
	}
	return "", false
}

// natsAction is what the proxy does with one frame: forward it (or
// another instead), drop it, answer it, cut the connection; then after.
type natsAction struct {
	drop, cut bool
	back      []byte // a frame to send back to where this one came from
	instead   []byte // a frame to forward instead of this one
	after     func()
}

// fromServer judges a frame from the broker: deliveries of input copies,
// and the confirmations of publishes a fault waits for.
func (p *natsProxy) fromServer(c *natsConn, f natsFrame) natsAction {
	if !p.hooks.alive(&c.proxyConn) {
		return natsAction{cut: true}
	}
	if f.op == "MSG" || f.op == "HMSG" {
		c.mu.Lock()
		confirm := c.confirms[f.subject]
		delete(c.confirms, f.subject)
		c.mu.Unlock()
		c.mu.Lock()
		delete(c.inflight, f.subject)
		c.mu.Unlock()
		if confirm != nil {
			v := confirm()
			a := natsAction{cut: v.cut, after: v.after}
			if v.refuse {
				a.instead = msgFrame(f.subject, f.sid, publishRefused)
			}
			return a
		}
	}
	if f.op != "HMSG" || !strings.HasPrefix(f.reply, "$JS.ACK.") || !strings.Contains(f.reply, "."+InStream+".") {
		return natsAction{}
	}
	v := p.hooks.delivered(&c.proxyConn, delivery{id: f.header.Get(HeaderMsgID), count: deliveryCount(f.reply), token: f.reply})
	return natsAction{drop: v.drop, cut: v.cut, after: v.after}
}

// deliveryCount reads the delivery count from a JetStream ack subject
// ($JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...).
func deliveryCount(reply string) string {
	t := strings.Split(reply, ".")
	for i, s := range t {
		if s == InStream && i+2 < len(t) {
			return t[i+2]
		}
	}
	return "?"
}

// fromClient judges a frame from the process: acks of deliveries and
// publishes of outputs.
func (p *natsProxy) fromClient(c *natsConn, f natsFrame) natsAction {
	if !p.hooks.alive(&c.proxyConn) {
		return natsAction{cut: true}
	}
	switch {
	case f.op == "SUB":
		if args := strings.Fields(string(f.raw)); len(args) >= 3 {
			c.mu.Lock()
			c.subs[args[1]] = args[len(args)-1]
			c.mu.Unlock()
		}
		return natsAction{}
	case f.op != "PUB" && f.op != "HPUB":
		return natsAction{}
	case strings.HasPrefix(f.subject, "$JS.ACK."):
		body := strings.TrimSpace(string(f.body))
		nack, detail := false, body
		switch {
		case body == "" || body == "+ACK" || strings.HasPrefix(body, "+NXT"):
			detail = ""
		case strings.HasPrefix(body, "-NAK"):
			nack = true
		case body == "+TERM" || strings.HasPrefix(body, "+TERM "):
			detail = "+TERM: the broker will not deliver it again"
		default: // +WPI, a progress report
			return natsAction{}
		}
		v := p.hooks.acked(&c.proxyConn, f.subject, nack, detail)
		return natsAction{drop: v.drop, cut: v.cut, after: v.after}
	case strings.HasPrefix(f.subject, OutSubject):
		v := p.hooks.published(&c.proxyConn, output{
			id: f.header.Get(HeaderMsgID), typ: strings.TrimPrefix(f.subject, OutSubject), cause: f.header.Get(HeaderCause),
			body: f.body, confirmed: f.reply != "",
		})
		a := natsAction{drop: v.drop, cut: v.cut, after: v.after}
		if v.refuse {
			a.drop = true
			c.mu.Lock()
			if sid, ok := c.sid(f.reply); ok && f.reply != "" {
				a.back = msgFrame(f.reply, sid, publishRefused)
			}
			c.mu.Unlock()
		}
		if v.atConfirm != nil {
			c.mu.Lock()
			c.confirms[f.reply] = v.atConfirm
			c.mu.Unlock()
		}
		if f.reply != "" && !a.drop && !a.cut {
			c.mu.Lock()
			c.inflight[f.reply] = true
			c.mu.Unlock()
		}
		return a
	}
	return natsAction{}
}

// publishRefused is the JetStream API error a refused publish gets.
var publishRefused = []byte(`{"error":{"code":503,"err_code":10077,"description":"oncecheck: publish refused (publish-failure fault)"}}`)

// msgFrame is a MSG operation carrying body to subject on sid.
func msgFrame(subject, sid string, body []byte) []byte {
	return append(fmt.Appendf(nil, "MSG %s %s %d\r\n", subject, sid, len(body)), append(body, '\r', '\n')...)
}

// natsProxy listens for the connections of one consumer process and
// forwards them to the broker, showing each frame to its hooks.
type natsProxy struct {
	ln       net.Listener
	upstream string
	index    int
	gen      func() int
	hooks    hooks

	mu    sync.Mutex
	conns []net.Conn
	live  []*natsConn
	wg    sync.WaitGroup
}

func newNATSProxy(upstream string, index int, gen func() int, hooks hooks) (*natsProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("nats proxy: listen: %w", err)
	}
	p := &natsProxy{ln: ln, upstream: upstream, index: index, gen: gen, hooks: hooks}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// env is the NATS_URL the process is given.
func (p *natsProxy) env() []string { return []string{"NATS_URL=nats://" + p.ln.Addr().String()} }

func (p *natsProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.upstream)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		c := &natsConn{proxyConn: proxyConn{index: p.index, gen: p.gen()}, subs: map[string]string{}, confirms: map[string]func() verdict{}, inflight: map[string]bool{}}
		p.mu.Lock()
		p.live = append(p.live, c)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, client, server, p.fromClient)
		go p.pipe(c, server, client, p.fromServer)
	}
}

// pipe forwards the frames read from src to dst until either side closes
// or a frame is dropped.
func (p *natsProxy) pipe(c *natsConn, src, dst net.Conn, judge func(*natsConn, natsFrame) natsAction) {
	defer p.wg.Done()
	defer func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
	}()
	defer src.Close()
	defer dst.Close()
	r := bufio.NewReaderSize(src, 64<<10)
	for {
		f, err := readFrame(r)
		if err != nil {
			return
		}
		v := judge(c, f)
		out := f.raw
		if v.instead != nil {
			out = v.instead
		}
		if !v.drop && !v.cut {
			if _, err := dst.Write(out); err != nil {
				return
			}
		}
		if v.back != nil {
			if _, err := src.Write(v.back); err != nil {
				return
			}
		}
		if v.after != nil {
			v.after()
		}
		if v.cut {
			return
		}
	}
}

// idle reports whether no open connection of the proxy waits for the
// confirmation of a publish of an output.
func (p *natsProxy) idle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.live {
		c.mu.Lock()
		busy := !c.closed && len(c.inflight) > 0
		c.mu.Unlock()
		if busy {
			return false
		}
	}
	return true
}

// close stops listening and cuts every connection.
func (p *natsProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// upstreamAddr turns a NATS URL into the host:port a proxy dials.
func upstreamAddr(url string) (string, error) {
	u := strings.TrimPrefix(strings.TrimPrefix(url, "nats://"), "tls://")
	if i := strings.IndexByte(u, ','); i >= 0 {
		u = u[:i]
	}
	if i := strings.LastIndexByte(u, '@'); i >= 0 {
		return "", errors.New("nats proxy: a server URL with credentials is not supported")
	}
	if _, _, err := net.SplitHostPort(u); err != nil {
		return "", fmt.Errorf("nats proxy: server %q: %w", url, err)
	}
	return u, nil
}
