package service

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The Kafka API keys the proxy reads.
const (
	kafkaProduce         = 0
	kafkaFetch           = 1
	kafkaMetadata        = 3
	kafkaOffsetCommit    = 8
	kafkaFindCoordinator = 10
	kafkaJoinGroup       = 11
	kafkaSyncGroup       = 14
	kafkaAPIVersions     = 18
	kafkaEndTxn          = 26
	kafkaTxnOffsetCommit = 28
)

// kafkaHold is how long the proxy holds a fetch response carrying input
// records while the process has deliveries it has not committed yet: a
// process is shown one delivery at a time, as it handles them (franz-go
// fetches the next records while the application works on the last ones).
const kafkaHold = time.Second

// kafkaFrame is one request or response of the Kafka protocol: its
// length-prefixed bytes and the header fields the proxy needs.
type kafkaFrame struct {
	raw      []byte // the whole frame, length included
	key, ver int16  // requests only
	corr     int32
	clientID *string
	body     []byte // after the header (requests only: a response's header depends on its request)
}

// readKafka reads one frame; request says whether it is a request.
func readKafka(r *bufio.Reader, request bool) (kafkaFrame, error) {
	var f kafkaFrame
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return f, err
	}
	n := int(binary.BigEndian.Uint32(size[:]))
	if n < 4 || n > 1<<28 {
		return f, fmt.Errorf("kafka proxy: frame length %d", n)
	}
	f.raw = make([]byte, 4+n)
	copy(f.raw, size[:])
	if _, err := io.ReadFull(r, f.raw[4:]); err != nil {
		return f, err
	}
	b := f.raw[4:]
	if !request {
		f.corr = int32(binary.BigEndian.Uint32(b))
		return f, nil
	}
	if len(b) < 8 {
		return f, errors.New("kafka proxy: short request header")
	}
	f.key, f.ver = int16(binary.BigEndian.Uint16(b)), int16(binary.BigEndian.Uint16(b[2:]))
	f.corr = int32(binary.BigEndian.Uint32(b[4:]))
	b = b[8:]
	if f.key == 7 && f.ver == 0 { // controlled shutdown v0 has no client id
		f.body = b
		return f, nil
	}
	if len(b) < 2 {
		return f, errors.New("kafka proxy: short request header")
	}
	if l := int(int16(binary.BigEndian.Uint16(b))); l >= 0 {
		if len(b) < 2+l {
			return f, errors.New("kafka proxy: short client id")
		}
		id := string(b[2 : 2+l])
		f.clientID = &id
		b = b[2+l:]
	} else {
		b = b[2:]
	}
	if req := kmsg.RequestForKey(f.key); req != nil {
		req.SetVersion(f.ver)
		if req.IsFlexible() {
			var err error
			if b, err = skipTags(b); err != nil {
				return f, err
			}
		}
	}
	f.body = b
	return f, nil
}

// skipTags skips a tagged-field section of a flexible header.
func skipTags(b []byte) ([]byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, errors.New("kafka proxy: bad tagged fields")
	}
	b = b[k:]
	for range n {
		_, k := binary.Uvarint(b) // tag
		if k <= 0 {
			return nil, errors.New("kafka proxy: bad tag")
		}
		b = b[k:]
		size, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < size {
			return nil, errors.New("kafka proxy: bad tag size")
		}
		b = b[k+int(size):]
	}
	return b, nil
}

// responseBody returns the body of a response to a request of key and
// version: after the correlation id and, for a flexible response other
// than ApiVersions', its tagged fields.
func responseBody(f kafkaFrame, resp kmsg.Response) ([]byte, error) {
	b := f.raw[8:]
	if resp.IsFlexible() && resp.Key() != kafkaAPIVersions {
		return skipTags(b)
	}
	return b, nil
}

// appendResponse encodes a response frame.
func appendResponse(corr int32, resp kmsg.Response) []byte {
	dst := make([]byte, 8, 64)
	binary.BigEndian.PutUint32(dst[4:], uint32(corr))
	if resp.IsFlexible() && resp.Key() != kafkaAPIVersions {
		dst = append(dst, 0)
	}
	dst = resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst, uint32(len(dst)-4))
	return dst
}

// kafkaPending is a request whose response the proxy reads.
type kafkaPending struct {
	key, ver int16
	group    string
	gen      int32              // SyncGroup: the generation
	instance *string            // JoinGroup: the static member's instance id
	acked    map[int32][]string // OffsetCommit: partition -> tokens it acked
	confirms []func() verdict   // Produce: what its confirmation does
	offsets  map[int32]int64    // Fetch: partition -> fetch offset asked
	txn      *kafkaTxnPending   // Produce, TxnOffsetCommit, EndTxn of a transactional producer
}

// kafkaConn is one client connection through a Kafka proxy.
type kafkaConn struct {
	proxyConn
	mu      sync.Mutex
	pending map[int32]kafkaPending // by correlation id
	closed  bool                   // a side of it closed: nothing more comes back
}

// end marks the connection closed.
func (c *kafkaConn) end() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}

// idle implements brokerProxy: no Produce request of the process waits
// for its response on an open connection.
func (p *kafkaProxy) idle() bool {
	p.mu.Lock()
	conns := slices.Clone(p.kconns)
	p.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		busy := false
		for _, pend := range c.pending {
			busy = busy || pend.key == kafkaProduce || pend.key == kafkaEndTxn
		}
		busy = busy && !c.closed
		c.mu.Unlock()
		if busy {
			return false
		}
	}
	return true
}

// kafkaOpen is a delivery through the proxy its process has not committed.
type kafkaOpen struct {
	partition int32
	offset    int64
	token     string
	gen       int // the process generation it went to
}

// kafkaProxy is the proxy of one consumer process in front of the Kafka
// cluster: a bootstrap listener (KAFKA_BROKERS) and one listener per
// broker, to which the Metadata and FindCoordinator responses it forwards
// point the client.
type kafkaProxy struct {
	b     *kafkaBroker
	index int
	gen   func() int
	hooks hooks
	boot  net.Listener

	mu      sync.Mutex
	nodes   map[int32]*kafkaNode
	topics  map[[16]byte]string // topic id -> name, from Metadata
	member  kafkaMember         // the process's latest membership
	open    []kafkaOpen
	changed chan struct{} // closed when open changes
	done    chan struct{} // closed by close
	conns   []net.Conn
	kconns  []*kafkaConn
	closed  bool
	wg      sync.WaitGroup
	// txns are the transactions of the process's transactional
	// producers, by transactional id (kafkatxn.go).
	txns map[string]*kafkaTxn
}

// kafkaNode is the listener of one broker.
type kafkaNode struct {
	ln       net.Listener
	upstream string
}

func newKafkaProxy(b *kafkaBroker, seed string, index int, gen func() int, h hooks) (*kafkaProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("kafka proxy: listen: %w", err)
	}
	p := &kafkaProxy{b: b, index: index, gen: gen, hooks: h, boot: ln,
		nodes: map[int32]*kafkaNode{}, topics: map[[16]byte]string{}, txns: map[string]*kafkaTxn{}, changed: make(chan struct{}), done: make(chan struct{})}
	p.wg.Add(1)
	go p.accept(ln, func() string { return seed })
	return p, nil
}

// env is the KAFKA_BROKERS the process is given.
func (p *kafkaProxy) env() []string { return []string{"KAFKA_BROKERS=" + p.boot.Addr().String()} }

// node returns the listener address of broker id at host:port, starting
// it on first sight.
func (p *kafkaProxy) node(id int32, host string, port int32) (string, int32) {
	up := net.JoinHostPort(host, strconv.Itoa(int(port)))
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.nodes[id]
	if !ok {
		if p.closed {
			return host, port
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return host, port
		}
		n = &kafkaNode{ln: ln}
		p.nodes[id] = n
		p.wg.Add(1)
		go p.accept(ln, func() string { p.mu.Lock(); defer p.mu.Unlock(); return n.upstream })
	}
	n.upstream = up
	a := n.ln.Addr().(*net.TCPAddr)
	return "127.0.0.1", int32(a.Port)
}

func (p *kafkaProxy) accept(ln net.Listener, upstream func() string) {
	defer p.wg.Done()
	for {
		client, err := ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", upstream())
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = client.Close()
			_ = server.Close()
			return
		}
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		c := &kafkaConn{proxyConn: proxyConn{index: p.index, gen: p.gen()}, pending: map[int32]kafkaPending{}}
		p.mu.Lock()
		p.kconns = append(p.kconns, c)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.requests(c, client, server)
		go p.responses(c, server, client)
	}
}

// topicName names a topic of a request or response: by name, or by id
// (Fetch v13+, Produce v13+, OffsetCommit v10+).
func (p *kafkaProxy) topicName(name string, id [16]byte) string {
	if name != "" {
		return name
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.topics[id]
}

// requests forwards the process's requests to the broker: it shrinks
// fetches to one record batch, turns offset commits into acks and
// produces to the output topic into publishes.
func (p *kafkaProxy) requests(c *kafkaConn, src, dst net.Conn) {
	defer p.wg.Done()
	defer c.end()
	defer src.Close()
	defer dst.Close()
	r := bufio.NewReaderSize(src, 64<<10)
	for {
		f, err := readKafka(r, true)
		if err != nil {
			return
		}
		if !p.hooks.alive(&c.proxyConn) {
			return
		}
		out, back, after, cut, pend := p.request(c, f)
		if pend != nil {
			c.mu.Lock()
			c.pending[f.corr] = *pend
			c.mu.Unlock()
		}
		var werr error
		if !cut && out != nil {
			_, werr = dst.Write(out)
		}
		if back != nil && werr == nil {
			_, werr = src.Write(back)
		}
		// What a fault planned after the frame runs whether the frame
		// got through or not: a pause holds the run busy until it ends.
		for _, fn := range after {
			fn()
		}
		if cut || werr != nil {
			return
		}
	}
}

// request judges one request: what to forward (nil: nothing), what to
// answer the process itself, what to run after, whether to cut, and what
// to remember for its response.
func (p *kafkaProxy) request(c *kafkaConn, f kafkaFrame) (out, back []byte, after []func(), cut bool, pend *kafkaPending) {
	out = f.raw
	switch f.key {
	case kafkaMetadata, kafkaFindCoordinator:
		return out, nil, nil, false, &kafkaPending{key: f.key, ver: f.ver}
	case kafkaJoinGroup:
		req := kmsg.NewPtrJoinGroupRequest()
		req.SetVersion(f.ver)
		if req.ReadFrom(f.body) == nil {
			rebalance := req.RebalanceTimeoutMillis
			if f.ver == 0 { // v0 has no rebalance timeout: it is the session timeout
				rebalance = req.SessionTimeoutMillis
			}
			p.b.joined(time.Duration(req.SessionTimeoutMillis)*time.Millisecond, time.Duration(rebalance)*time.Millisecond)
			return out, nil, nil, false, &kafkaPending{key: f.key, ver: f.ver, group: req.Group, instance: req.InstanceID}
		}
	case kafkaSyncGroup:
		req := kmsg.NewPtrSyncGroupRequest()
		req.SetVersion(f.ver)
		if req.ReadFrom(f.body) == nil {
			return out, nil, nil, false, &kafkaPending{key: f.key, ver: f.ver, group: req.Group, gen: req.Generation}
		}
	case kafkaFetch:
		req := kmsg.NewPtrFetchRequest()
		req.SetVersion(f.ver)
		if req.ReadFrom(f.body) != nil {
			return out, nil, nil, false, nil
		}
		// One record batch per response: Kafka always returns the first
		// batch whatever the limits (KIP-74).
		req.MaxBytes = 1
		offsets := map[int32]int64{}
		for i := range req.Topics {
			for j := range req.Topics[i].Partitions {
				req.Topics[i].Partitions[j].PartitionMaxBytes = 1
				pt := req.Topics[i].Partitions[j]
				if p.topicName(req.Topics[i].Topic, req.Topics[i].TopicID) == KafkaInTopic {
					offsets[pt.Partition] = pt.FetchOffset
				}
			}
		}
		fm := kmsg.NewRequestFormatter()
		if f.clientID != nil {
			fm = kmsg.NewRequestFormatter(kmsg.FormatterClientID(*f.clientID))
		}
		return fm.AppendRequest(nil, req, f.corr), nil, nil, false, &kafkaPending{key: f.key, ver: f.ver, offsets: offsets}
	case kafkaOffsetCommit:
		return p.commit(c, f)
	case kafkaProduce:
		return p.produce(c, f)
	case kafkaTxnOffsetCommit:
		return p.txnCommit(f)
	case kafkaEndTxn:
		return p.endTxn(c, f)
	}
	return out, nil, nil, false, nil
}

// commit turns an OffsetCommit of the input topic into acks: a commit of
// offset n acks every open delivery of the partition below n.
func (p *kafkaProxy) commit(c *kafkaConn, f kafkaFrame) (out, back []byte, after []func(), cut bool, pend *kafkaPending) {
	out = f.raw
	req := kmsg.NewPtrOffsetCommitRequest()
	req.SetVersion(f.ver)
	if req.ReadFrom(f.body) != nil {
		return out, nil, nil, false, nil
	}
	pend = &kafkaPending{key: f.key, ver: f.ver, acked: map[int32][]string{}}
	drop := false
	for _, t := range req.Topics {
		if p.topicName(t.Topic, t.TopicID) != KafkaInTopic {
			continue
		}
		for _, pt := range t.Partitions {
			p.mu.Lock()
			var covered []kafkaOpen
			for _, o := range p.open {
				if o.gen == c.gen && o.partition == pt.Partition && o.offset < pt.Offset {
					covered = append(covered, o)
				}
			}
			p.mu.Unlock()
			for _, o := range covered {
				v := p.hooks.acked(&c.proxyConn, o.token, false, fmt.Sprintf("OffsetCommit %s/%d at offset %d, generation %d", KafkaInTopic, pt.Partition, pt.Offset, req.Generation))
				p.close1(o.token)
				if v.cut {
					return nil, nil, nil, true, nil
				}
				if v.drop {
					drop = true
				}
				if v.after != nil {
					after = append(after, v.after)
				}
				pend.acked[pt.Partition] = append(pend.acked[pt.Partition], o.token)
			}
		}
	}
	if drop {
		// The commit is lost: the broker never sees it, the process is
		// told it succeeded.
		resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, t := range req.Topics {
			rt := kmsg.NewOffsetCommitResponseTopic()
			rt.Topic, rt.TopicID = t.Topic, t.TopicID
			for _, pt := range t.Partitions {
				rp := kmsg.NewOffsetCommitResponseTopicPartition()
				rp.Partition = pt.Partition
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return nil, appendResponse(f.corr, resp), after, false, nil
	}
	return out, nil, after, false, pend
}

// assigned ends the process's open deliveries of the input partitions a
// new assignment of its group (a SyncGroup response) does not give it:
// the client drops what it fetched of a partition taken from it, and the
// partition's next owner starts from the committed offset. They are
// recorded as given back (nacks): an attempt that ended unacknowledged.
func (p *kafkaProxy) assigned(c *kafkaConn, assignment []byte, pend kafkaPending) {
	owned := map[int32]bool{}
	if len(assignment) > 0 {
		var a kmsg.ConsumerMemberAssignment
		if a.ReadFrom(assignment) != nil {
			return // not the consumer protocol
		}
		for _, t := range a.Topics {
			if t.Topic == KafkaInTopic {
				for _, part := range t.Partitions {
					owned[part] = true
				}
			}
		}
	}
	p.mu.Lock()
	var gone []kafkaOpen
	for _, o := range p.open {
		if o.gen == c.gen && !owned[o.partition] {
			gone = append(gone, o)
		}
	}
	p.mu.Unlock()
	for _, o := range gone {
		p.hooks.acked(&c.proxyConn, o.token, true, fmt.Sprintf("the group %s assigned %s/%d elsewhere (SyncGroup, generation %d) before a commit covered offset %d: the member drops what it fetched of it, and the partition's next owner starts from the committed offset",
			pend.group, KafkaInTopic, o.partition, pend.gen, o.offset))
		p.close1(o.token)
	}
}

// close1 forgets an open delivery.
func (p *kafkaProxy) close1(token string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.open = slices.DeleteFunc(p.open, func(o kafkaOpen) bool { return o.token == token })
	close(p.changed)
	p.changed = make(chan struct{})
}

// produce turns the records of a Produce to the output topic into
// publishes; a refused one is answered with NOT_ENOUGH_REPLICAS (the
// broker stored nothing), a lost confirmation with REQUEST_TIMED_OUT
// (the broker stored it): both retriable, as Kafka's are.
func (p *kafkaProxy) produce(c *kafkaConn, f kafkaFrame) (out, back []byte, after []func(), cut bool, pend *kafkaPending) {
	out = f.raw
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(f.ver)
	if req.ReadFrom(f.body) != nil {
		return out, nil, nil, false, nil
	}
	if req.TransactionID != nil {
		return p.txnProduce(c, f, req)
	}
	pend = &kafkaPending{key: f.key, ver: f.ver}
	refuse := false
	whole := p.eachOutput(req, func(_ int32, _ kafkaRecord, o output) bool {
		o.confirmed = req.Acks != 0
		v := p.hooks.published(&c.proxyConn, o)
		if v.cut {
			return false
		}
		refuse = refuse || v.refuse
		if v.after != nil {
			after = append(after, v.after)
		}
		if v.atConfirm != nil {
			pend.confirms = append(pend.confirms, v.atConfirm)
		}
		return true
	})
	if !whole {
		return nil, nil, nil, true, nil
	}
	if refuse {
		if req.Acks == 0 {
			return nil, nil, after, false, nil
		}
		return nil, appendResponse(f.corr, produceError(req, kerr.NotEnoughReplicas.Code)), after, false, nil
	}
	if req.Acks == 0 {
		// No response comes: a confirmation fault strikes at once.
		for _, fn := range pend.confirms {
			if v := fn(); v.cut {
				return out, nil, after, true, nil
			}
		}
		return out, nil, after, false, nil
	}
	return out, nil, after, false, pend
}

// eachOutput calls fn with each record a Produce request sends to the
// output topic, its partition and the output its value and the contract's
// headers make; it stops, and reports false, when fn returns false.
func (p *kafkaProxy) eachOutput(req *kmsg.ProduceRequest, fn func(partition int32, rec kafkaRecord, o output) bool) bool {
	for _, t := range req.Topics {
		if p.topicName(t.Topic, t.TopicID) != KafkaOutTopic {
			continue
		}
		for _, pt := range t.Partitions {
			recs, err := kafkaRecords(pt.Records)
			if err != nil {
				continue
			}
			for _, rec := range recs {
				o := output{body: rec.Value}
				for _, h := range rec.Headers {
					switch h.Key {
					case KafkaHeaderID:
						o.id = string(h.Value)
					case HeaderType:
						o.typ = string(h.Value)
					case HeaderCause:
						o.cause = string(h.Value)
					}
				}
				if !fn(pt.Partition, rec, o) {
					return false
				}
			}
		}
	}
	return true
}

// produceError is the response to req with code for every partition.
func produceError(req *kmsg.ProduceRequest, code int16) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		for _, pt := range t.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition, rp.ErrorCode, rp.BaseOffset = pt.Partition, code, -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// kafkaRecords decodes the record batches of a produce or fetch, whatever
// their compression; control batches (transaction markers) are skipped.
func kafkaRecords(b []byte) ([]kafkaRecord, error) {
	var recs []kafkaRecord
	dec := kgo.DefaultDecompressor()
	for len(b) >= 12 {
		n := int(int32(binary.BigEndian.Uint32(b[8:])))
		if n <= 0 || len(b) < 12+n {
			break // a partial batch at the end of a fetch
		}
		var batch kmsg.RecordBatch
		if err := batch.ReadFrom(b[:12+n]); err != nil {
			return recs, fmt.Errorf("kafka proxy: record batch: %w", err)
		}
		b = b[12+n:]
		if batch.Magic != 2 || batch.Attributes&0x20 != 0 {
			continue
		}
		raw := batch.Records
		if codec := batch.Attributes & 0x07; codec != 0 {
			var err error
			if raw, err = dec.Decompress(raw, kgo.CompressionCodecType(codec)); err != nil {
				return recs, fmt.Errorf("kafka proxy: decompress a batch: %w", err)
			}
		}
		for range batch.NumRecords {
			l, k := binary.Varint(raw)
			if k <= 0 || l < 0 || len(raw) < k+int(l) {
				return recs, errors.New("kafka proxy: bad record length")
			}
			var rec kmsg.Record
			if err := rec.ReadFrom(raw[:k+int(l)]); err != nil {
				return recs, fmt.Errorf("kafka proxy: record: %w", err)
			}
			raw = raw[k+int(l):]
			recs = append(recs, kafkaRecord{Record: rec, offset: batch.FirstOffset + int64(rec.OffsetDelta), producer: batch.ProducerID, epoch: batch.ProducerEpoch})
		}
	}
	return recs, nil
}

// kafkaRecord is a record of a batch with its offset.
type kafkaRecord struct {
	kmsg.Record
	offset   int64
	producer int64 // the batch's producer id and epoch
	epoch    int16
}

// responses forwards the broker's responses to the process: Metadata and
// FindCoordinator rewritten to the proxy's listeners, fetched input
// records as deliveries, commit refusals, produce confirmations.
func (p *kafkaProxy) responses(c *kafkaConn, src, dst net.Conn) {
	defer p.wg.Done()
	defer c.end()
	defer src.Close()
	defer dst.Close()
	r := bufio.NewReaderSize(src, 64<<10)
	for {
		f, err := readKafka(r, false)
		if err != nil {
			return
		}
		c.mu.Lock()
		pend, ok := c.pending[f.corr]
		delete(c.pending, f.corr)
		c.mu.Unlock()
		if !p.hooks.alive(&c.proxyConn) {
			if ok && pend.key == kafkaEndTxn {
				// What the broker did counts, whether the process
				// lived to hear it or not.
				p.response(c, f, pend)
			}
			return
		}
		out, after, cut := f.raw, func() {}, false
		if ok {
			out, after, cut = p.response(c, f, pend)
		}
		var werr error
		if !cut && out != nil {
			_, werr = dst.Write(out)
		}
		after() // whether the frame got through or not, as for a request
		if cut || werr != nil {
			return
		}
	}
}

// response judges one response to a request the proxy remembered.
func (p *kafkaProxy) response(c *kafkaConn, f kafkaFrame, pend kafkaPending) (out []byte, after func(), cut bool) {
	out, after = f.raw, func() {}
	req := kmsg.RequestForKey(pend.key)
	req.SetVersion(pend.ver)
	resp := req.ResponseKind()
	body, err := responseBody(f, resp)
	if err != nil || resp.ReadFrom(body) != nil {
		return out, after, false
	}
	switch resp := resp.(type) {
	case *kmsg.MetadataResponse:
		for i, br := range resp.Brokers {
			resp.Brokers[i].Host, resp.Brokers[i].Port = p.node(br.NodeID, br.Host, br.Port)
		}
		p.mu.Lock()
		for _, t := range resp.Topics {
			if t.Topic != nil {
				p.topics[t.TopicID] = *t.Topic
			}
		}
		p.mu.Unlock()
		return appendResponse(f.corr, resp), after, false
	case *kmsg.FindCoordinatorResponse:
		if resp.ErrorCode == 0 && resp.Host != "" {
			resp.Host, resp.Port = p.node(resp.NodeID, resp.Host, resp.Port)
		}
		for i, co := range resp.Coordinators {
			if co.ErrorCode == 0 && co.Host != "" {
				resp.Coordinators[i].Host, resp.Coordinators[i].Port = p.node(co.NodeID, co.Host, co.Port)
			}
		}
		return appendResponse(f.corr, resp), after, false
	case *kmsg.JoinGroupResponse:
		if resp.ErrorCode == 0 {
			p.mu.Lock()
			p.member = kafkaMember{group: pend.group, id: resp.MemberID, instance: pend.instance}
			p.mu.Unlock()
		}
	case *kmsg.SyncGroupResponse:
		if resp.ErrorCode == 0 {
			p.assigned(c, resp.MemberAssignment, pend)
		}
	case *kmsg.OffsetCommitResponse:
		for _, t := range resp.Topics {
			for _, pt := range t.Partitions {
				if pt.ErrorCode == 0 {
					continue
				}
				for _, token := range pend.acked[pt.Partition] {
					// The process's commit is its claim (recorded as an
					// ack); the broker's refusal is recorded after it.
					p.hooks.acked(&c.proxyConn, token, true, "— the broker refused this commit: "+kerr.ErrorForCode(pt.ErrorCode).Error())
				}
			}
		}
	case *kmsg.ProduceResponse:
		if pend.txn != nil {
			p.txnProduced(resp, pend.txn)
			return out, after, false
		}
		refuse := false
		var afters []func()
		for _, fn := range pend.confirms {
			v := fn()
			if v.cut {
				return nil, after, true
			}
			refuse = refuse || v.refuse
			if v.after != nil {
				afters = append(afters, v.after)
			}
		}
		after = func() {
			for _, fn := range afters {
				fn()
			}
		}
		if refuse {
			for i := range resp.Topics {
				for j := range resp.Topics[i].Partitions {
					resp.Topics[i].Partitions[j].ErrorCode = kerr.RequestTimedOut.Code
				}
			}
			return appendResponse(f.corr, resp), after, false
		}
	case *kmsg.FetchResponse:
		return p.fetched(c, f, resp, pend)
	case *kmsg.TxnOffsetCommitResponse:
		p.txnCommitted(c, resp, pend.txn)
	case *kmsg.EndTxnResponse:
		return p.txnEnded(c, f, resp, pend.txn)
	}
	return out, after, false
}

// fetched turns the input records of a fetch response into deliveries,
// holding the response while the process has deliveries it has not yet
// committed (up to kafkaHold).
func (p *kafkaProxy) fetched(c *kafkaConn, f kafkaFrame, resp *kmsg.FetchResponse, pend kafkaPending) (out []byte, after func(), cut bool) {
	out, after = f.raw, func() {}
	type rec struct {
		partition int32
		kafkaRecord
	}
	var recs []rec
	for _, t := range resp.Topics {
		if p.topicName(t.Topic, t.TopicID) != KafkaInTopic {
			continue
		}
		for _, pt := range t.Partitions {
			rs, _ := kafkaRecords(pt.RecordBatches)
			from, asked := pend.offsets[pt.Partition]
			for _, r := range rs {
				if asked && r.offset < from {
					continue // the client skips what it did not ask for
				}
				recs = append(recs, rec{pt.Partition, r})
			}
		}
	}
	if len(recs) == 0 {
		return out, after, false
	}
	deadline := time.NewTimer(kafkaHold)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		n, changed := 0, p.changed
		for _, o := range p.open {
			if o.gen == c.gen {
				n++
			}
		}
		p.mu.Unlock()
		if n == 0 || !p.hooks.alive(&c.proxyConn) {
			break
		}
		select {
		case <-changed:
			continue
		case <-deadline.C:
		case <-p.done:
		}
		break
	}
	var afters []func()
	for _, r := range recs {
		p.mu.Lock()
		m := p.member
		p.mu.Unlock()
		token, count := p.b.delivered(r.partition, r.offset, m)
		var id string
		for _, h := range r.Headers {
			if h.Key == KafkaHeaderID {
				id = string(h.Value)
			}
		}
		p.mu.Lock()
		p.open = slices.DeleteFunc(p.open, func(o kafkaOpen) bool { return o.gen != c.gen })
		p.open = append(p.open, kafkaOpen{partition: r.partition, offset: r.offset, token: token, gen: c.gen})
		p.mu.Unlock()
		v := p.hooks.delivered(&c.proxyConn, delivery{id: id, count: strconv.Itoa(count), token: token})
		if v.cut {
			return nil, after, true
		}
		if v.after != nil {
			afters = append(afters, v.after)
		}
	}
	return out, func() {
		for _, fn := range afters {
			fn()
		}
	}, false
}

// close stops listening and cuts every connection.
func (p *kafkaProxy) close() {
	p.mu.Lock()
	p.closed = true
	close(p.done)
	_ = p.boot.Close()
	for _, n := range p.nodes {
		_ = n.ln.Close()
	}
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
