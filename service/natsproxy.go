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

// verdict is what a proxy does with a frame: forward it or drop it, close
// the connection or not, then run after, if any.
type verdict struct {
	drop    bool   // the frame is not forwarded
	cut     bool   // the connection is closed (its process is dead)
	back    []byte // a frame to send back to where this one came from
	instead []byte // a frame to forward instead of this one
	after   func()
}

// natsHooks see every frame a proxied connection carries.
type natsHooks interface {
	// fromServer and fromClient judge a frame of connection c.
	fromServer(c *proxyConn, f natsFrame) verdict
	fromClient(c *proxyConn, f natsFrame) verdict
}

// proxyConn is one client connection through a proxy.
type proxyConn struct {
	index int // the consumer process it belongs to
	gen   int // the generation of the process when it connected
	// subs are the client's subscriptions, subject to sid (NATS proxy
	// only; guarded by the hooks' lock).
	subs map[string]string
}

// sid returns the client's subscription that a message to subject
// reaches: an exact subject, or a wildcard one ("_INBOX.abc.*").
func (c *proxyConn) sid(subject string) (string, bool) {
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
	hooks    natsHooks

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newNATSProxy(upstream string, index int, gen func() int, hooks natsHooks) (*natsProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("nats proxy: listen: %w", err)
	}
	p := &natsProxy{ln: ln, upstream: upstream, index: index, gen: gen, hooks: hooks}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// url is the NATS_URL the process is given.
func (p *natsProxy) url() string { return "nats://" + p.ln.Addr().String() }

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
		c := &proxyConn{index: p.index, gen: p.gen(), subs: map[string]string{}}
		p.wg.Add(2)
		go p.pipe(c, client, server, p.hooks.fromClient)
		go p.pipe(c, server, client, p.hooks.fromServer)
	}
}

// pipe forwards the frames read from src to dst until either side closes
// or a frame is dropped.
func (p *natsProxy) pipe(c *proxyConn, src, dst net.Conn, judge func(*proxyConn, natsFrame) verdict) {
	defer p.wg.Done()
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
