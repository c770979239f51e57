package service

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgproto3"
)

// The codes of PostgreSQL's untyped first messages.
const (
	pgSSLRequest    = 80877103
	pgGSSENCRequest = 80877104
	pgCancelRequest = 80877102
)

// pgMessage is one message of the PostgreSQL wire protocol, as read: its
// type byte (0 for an untyped startup message) and body, and the bytes to
// forward.
type pgMessage struct {
	typ  byte
	body []byte
	raw  []byte
}

// readPG reads one typed message, or an untyped one when typed is false.
func readPG(r *bufio.Reader, typed bool) (pgMessage, error) {
	var m pgMessage
	head := 4
	if typed {
		head = 5
	}
	hdr := make([]byte, head)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return m, err
	}
	if typed {
		m.typ = hdr[0]
	}
	n := int(binary.BigEndian.Uint32(hdr[head-4:]))
	if n < 4 || n > 1<<30 {
		return m, fmt.Errorf("pg proxy: message length %d", n)
	}
	m.raw = make([]byte, head+n-4)
	copy(m.raw, hdr)
	if _, err := io.ReadFull(r, m.raw[head:]); err != nil {
		return m, err
	}
	m.body = m.raw[head:]
	return m, nil
}

// pgHooks see the statements of a proxied connection and their results.
type pgHooks interface {
	// statement is called as a statement (simple query or Execute of a
	// portal) goes to the server; result as the server completes one
	// (tag "COMMIT", "INSERT 0 1", ...), with the text of the statement
	// and whether the connection was in a transaction before it.
	statement(c *pgConn, sql string) verdict
	result(c *pgConn, sql, tag string, inTx bool) verdict
}

// pgConn is the protocol state of one proxied connection.
type pgConn struct {
	proxyConn
	id      int
	mu      sync.Mutex
	stmts   map[string]string // prepared statement -> text
	portals map[string]string // portal -> text
	pending []pgPending       // statements sent, not yet completed
	inTx    bool
	// syncs counts what the client sent that the server answers with a
	// ReadyForQuery (the startup, a simple query, a Sync) and has not yet;
	// unsynced says it sent another message (a Parse, a Flush, a
	// password) since the server last sent anything: both mean the client
	// may be waiting on the server.
	syncs    int
	unsynced bool
	tx       int // the history's number of the open transaction
	// txStmts counts the statements of the open transaction the server
	// completed, BEGIN not counted (a cut-connection fault's Index).
	txStmts int
	// q follows the queue on this connection when the run's broker is
	// a PostgreSQL table (pgqueue.go); nil otherwise.
	q *pgQueueConn
	// server is the connection to the server, written by the goroutine
	// forwarding the client's messages only.
	server net.Conn
}

type pgPending struct {
	sql    string
	simple bool
}

// pgProxy listens for the database connections of one consumer process.
type pgProxy struct {
	ln       net.Listener
	network  string // of the server: tcp, or unix for a socket
	upstream string
	index    int
	gen      func() int
	hooks    pgHooks

	mu    sync.Mutex
	conns []net.Conn
	live  map[*pgConn]bool // connections being served (see idle)
	next  int
	wg    sync.WaitGroup
}

func newPGProxy(network, upstream string, index int, gen func() int, hooks pgHooks) (*pgProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("pg proxy: listen: %w", err)
	}
	p := &pgProxy{ln: ln, network: network, upstream: upstream, index: index, gen: gen, hooks: hooks, live: map[*pgConn]bool{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *pgProxy) addr() string { return p.ln.Addr().String() }

func (p *pgProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.next++
		c := &pgConn{proxyConn: proxyConn{index: p.index, gen: p.gen()}, id: p.next, stmts: map[string]string{}, portals: map[string]string{},
			syncs: 1} // the server's ReadyForQuery ends the startup
		if qh, ok := p.hooks.(pgQueueHooks); ok {
			if _, _, on := qh.queueColumn(); on {
				c.q = newPGQueueConn()
			}
		}
		p.conns = append(p.conns, client)
		p.live[c] = true
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			p.serve(c, client)
			p.mu.Lock()
			delete(p.live, c)
			p.mu.Unlock()
		}()
	}
}

// serve answers an SSL or GSS encryption request with "no" (the proxy
// reads the protocol in clear; a client with sslmode=prefer goes on
// without), forwards the startup message, then pipes both ways.
func (p *pgProxy) serve(c *pgConn, client net.Conn) {
	defer p.wg.Done()
	defer client.Close()
	cr := bufio.NewReader(client)
	var startup pgMessage
	for {
		m, err := readPG(cr, false)
		if err != nil || len(m.body) < 4 {
			return
		}
		code := binary.BigEndian.Uint32(m.body[:4])
		if code == pgSSLRequest || code == pgGSSENCRequest {
			if _, err := client.Write([]byte{'N'}); err != nil {
				return
			}
			continue
		}
		startup = m
		break
	}
	server, err := net.Dial(p.network, p.upstream)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, server)
	p.mu.Unlock()
	defer server.Close()
	c.server = server
	if _, err := server.Write(startup.raw); err != nil {
		return
	}
	if binary.BigEndian.Uint32(startup.body[:4]) == pgCancelRequest {
		c.mu.Lock()
		c.syncs = 0 // no ReadyForQuery ends a cancel request
		c.mu.Unlock()
		_, _ = io.Copy(client, server)
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer client.Close()
		defer server.Close()
		p.pipe(bufio.NewReader(server), client, func(m pgMessage) verdict {
			v := p.fromServer(c, m)
			if c.q != nil {
				c.q.heard(c)
			}
			return v
		})
		if c.q != nil { // the server rolls back what was open
			c.q.heard(c)
			p.hooks.(pgQueueHooks).queueIdle(c, false, true)
		}
	}()
	p.pipe(cr, server, func(m pgMessage) verdict { return p.fromClient(c, m) })
}

func (p *pgProxy) pipe(r *bufio.Reader, dst net.Conn, judge func(pgMessage) verdict) {
	for {
		m, err := readPG(r, true)
		if err != nil {
			return
		}
		v := judge(m)
		if !v.drop && !v.cut {
			if _, err := dst.Write(m.raw); err != nil {
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

// fromClient follows the statements a client sends, in the simple and
// the extended query protocol.
func (p *pgProxy) fromClient(c *pgConn, m pgMessage) verdict {
	c.mu.Lock()
	var sql string
	send := false
	switch m.typ {
	case 'Q', 'S':
		c.syncs++
	case 'X': // Terminate: no answer
	default:
		c.unsynced = true
	}
	switch m.typ {
	case 'Q':
		var q pgproto3.Query
		if q.Decode(m.body) == nil {
			sql, send = q.String, true
			c.pending = append(c.pending, pgPending{sql: sql, simple: true})
		}
	case 'P':
		var q pgproto3.Parse
		if q.Decode(m.body) == nil {
			c.stmts[q.Name] = q.Query
		}
	case 'B':
		var b pgproto3.Bind
		if b.Decode(m.body) == nil {
			c.portals[b.DestinationPortal] = c.stmts[b.PreparedStatement]
		}
	case 'E':
		var e pgproto3.Execute
		if e.Decode(m.body) == nil {
			sql, send = c.portals[e.Portal], true
			c.pending = append(c.pending, pgPending{sql: sql})
		}
	}
	if c.q != nil {
		c.q.client(c, m)
	}
	c.mu.Unlock()
	if m.typ == 'S' && c.q != nil {
		return p.hooks.(pgQueueHooks).queueSync(c)
	}
	if !send {
		return verdict{}
	}
	return p.hooks.statement(c, sql)
}

// fromServer follows the results: a CommandComplete completes the oldest
// pending statement, a ReadyForQuery ends them all and says whether a
// transaction is open.
func (p *pgProxy) fromServer(c *pgConn, m pgMessage) verdict {
	c.mu.Lock()
	c.unsynced = false
	c.mu.Unlock()
	if c.q != nil {
		if v, handled := p.queueServer(c, m); handled {
			return v
		}
	}
	switch m.typ {
	case 'C':
		var cc pgproto3.CommandComplete
		if cc.Decode(m.body) != nil {
			return verdict{}
		}
		c.mu.Lock()
		sql, inTx := "", c.inTx
		if len(c.pending) > 0 {
			sql = c.pending[0].sql
			if !c.pending[0].simple {
				c.pending = c.pending[1:]
			}
		}
		tag := string(cc.CommandTag)
		switch {
		case strings.HasPrefix(tag, "BEGIN") || strings.HasPrefix(tag, "START"):
			c.inTx = true
		case tag == "COMMIT" || tag == "ROLLBACK":
			c.inTx = false
		}
		c.mu.Unlock()
		return p.hooks.result(c, sql, tag, inTx)
	case 'Z':
		var z pgproto3.ReadyForQuery
		if z.Decode(m.body) == nil {
			c.mu.Lock()
			c.pending = nil
			c.inTx = z.TxStatus != 'I'
			c.syncs = max(c.syncs-1, 0)
			c.mu.Unlock()
		}
	}
	return verdict{}
}

// idle reports whether no connection of the proxy has a statement in
// flight (sent, its ReadyForQuery not yet back), a transaction open, or
// anything else the server has not answered yet with a ReadyForQuery: its
// startup (a new connection's authentication), a Parse or Describe.
func (p *pgProxy) idle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.live {
		c.mu.Lock()
		busy := len(c.pending) > 0 || c.inTx || c.syncs > 0 || c.unsynced
		c.mu.Unlock()
		if busy {
			return false
		}
	}
	return true
}

func (p *pgProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
