package service

// A transactional producer on Kafka (docs/service-mode-kafka.md,
// "Transactions"): what the service produces inside a transaction and
// the offsets it commits with TxnOffsetCommit count only when the
// broker commits the transaction (EndTxn with commit, its response
// without error), as a read_committed consumer of the output topic and
// the group's committed offsets see them. An aborted transaction, or one
// the broker aborts itself (its timeout; a new producer of the same
// transactional id fencing the old one), counts for nothing.
//
// The proxy keeps each transaction of the process, by transactional id
// and producer id and epoch: the outputs the broker stored (Produce
// responses without error) and the offsets of the input it staged
// (TxnOffsetCommit responses without error). At EndTxn(commit) the run
// judges the faults of the outputs and of the deliveries the staged
// offsets cover (a prefix of each partition, as an OffsetCommit's):
//
//   - crash before-publish, before-ack: the EndTxn is dropped and the
//     process killed: the transaction stays open until the broker aborts
//     it (its timeout, or the restarted process's InitProducerId with the
//     same transactional id, which fences the old epoch);
//   - crash after-publish, after-ack: the EndTxn goes to the broker, its
//     response is held and the process killed;
//   - publish-failure lost-ack and redelivery ack-lost: a lost EndTxn
//     response: the broker's answer is read, then dropped and the
//     connection closed; the producer retries the EndTxn, which the
//     broker answers from the transaction it ended;
//   - redelivery lease-expired at the ack (index 1): the process stops
//     with its EndTxn held, past its session timeout; then the EndTxn goes
//     to the broker, which commits it or fences it;
//   - publish-failure rejected: at the Produce, as for any producer: the
//     proxy answers NOT_ENOUGH_REPLICAS and the broker stores nothing.
//
// The broker's response decides: when it commits, the outputs are
// recorded as publishes and the covered deliveries as acked; when it
// refuses (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH, INVALID_TXN_STATE),
// a refused event says so and nothing counts. A transaction that ends
// without committing (refused, or aborted by the process) ends the
// process's open deliveries as nacks: the records come again.

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// kafkaTxnHooks are what the run does with a transactional producer's
// frames (implemented by *run). A proxy whose hooks lack them forwards a
// transactional producer's frames without judging them.
type kafkaTxnHooks interface {
	// txnProduce attributes an output produced inside a transaction, as
	// its Produce goes to the broker; a refuse verdict answers the
	// Produce with an error instead.
	txnProduce(c *proxyConn, o output) (kafkaTxnOut, verdict)
	// txnEnding judges an EndTxn(commit) as it goes to the broker: a cut
	// verdict drops it and kills the process; e's lost and strike say what
	// becomes of its response. It may pause the process first.
	txnEnding(c *proxyConn, e *kafkaTxnEnd) verdict
	// txnEnded records what the broker did with the EndTxn(commit) of e;
	// a cut verdict drops the response (the process is killed).
	txnEnded(c *proxyConn, e *kafkaTxnEnd, committed bool, detail string) verdict
	// txnNote records a transactional request the broker refused.
	txnNote(c *proxyConn, detail string)
}

// kafkaTxnOut is an output produced inside a transaction.
type kafkaTxnOut struct {
	o         output
	a         *attempt // the attempt it is attributed to, nil if none
	index     int      // its number among the attempt's outputs
	partition int32
}

// kafkaTxn is a transaction of one transactional id, as the proxy saw
// the broker take its parts.
type kafkaTxn struct {
	producer int64
	epoch    int16
	outs     []kafkaTxnOut
	offsets  map[int32]int64 // the input's staged offsets, by partition
	group    string
	gen      int32 // the group generation its TxnOffsetCommit named
}

// kafkaTxnPending is what the proxy remembers of a transactional request
// until its response comes.
type kafkaTxnPending struct {
	id       string
	producer int64
	epoch    int16
	outs     []kafkaTxnOut   // Produce
	offsets  map[int32]int64 // TxnOffsetCommit
	group    string
	gen      int32
	end      *kafkaTxnEnd // EndTxn(commit)
	commit   bool         // EndTxn
}

// kafkaTxnEnd is an EndTxn(commit) and what it covers.
type kafkaTxnEnd struct {
	outs   []kafkaTxnOut
	tokens []string // the deliveries its staged offsets cover
	where  string   // the request, for the history
	// Set by txnEnding: the response is lost (the fault), or a crash
	// strikes as it comes back.
	lost   *faults.Fault
	strike *strike
}

// txnOf returns the transaction of id for producer id and epoch: a new
// one when the producer's id or epoch changed (the old transaction
// ended, or the broker aborted it); p.mu is held.
func (p *kafkaProxy) txnOf(id string, producer int64, epoch int16) *kafkaTxn {
	t := p.txns[id]
	if t == nil || t.producer != producer || t.epoch != epoch {
		t = &kafkaTxn{producer: producer, epoch: epoch, offsets: map[int32]int64{}}
		p.txns[id] = t
	}
	return t
}

// txnProduce judges a transactional producer's Produce: its outputs are
// kept for the transaction once the broker stores them; a refused one is
// answered with NOT_ENOUGH_REPLICAS.
func (p *kafkaProxy) txnProduce(c *kafkaConn, f kafkaFrame, req *kmsg.ProduceRequest) (out, back []byte, after []func(), cut bool, pend *kafkaPending) {
	out = f.raw
	th, ok := p.hooks.(kafkaTxnHooks)
	if !ok {
		return out, nil, nil, false, nil
	}
	tp := &kafkaTxnPending{id: *req.TransactionID, producer: -1}
	refuse := false
	whole := p.eachOutput(req, func(partition int32, rec kafkaRecord, o output) bool {
		tp.producer, tp.epoch = rec.producer, rec.epoch
		o.confirmed = true
		to, v := th.txnProduce(&c.proxyConn, o)
		if v.cut {
			return false
		}
		refuse = refuse || v.refuse
		to.partition = partition
		tp.outs = append(tp.outs, to)
		return true
	})
	if !whole {
		return nil, nil, nil, true, nil
	}
	if refuse {
		if req.Acks == 0 {
			return nil, nil, nil, false, nil
		}
		return nil, appendResponse(f.corr, produceError(req, kerr.NotEnoughReplicas.Code)), nil, false, nil
	}
	if len(tp.outs) == 0 {
		return out, nil, nil, false, &kafkaPending{key: f.key, ver: f.ver}
	}
	return out, nil, nil, false, &kafkaPending{key: f.key, ver: f.ver, txn: tp}
}

// txnProduced keeps the outputs of a transactional Produce the broker
// stored, partition by partition.
func (p *kafkaProxy) txnProduced(resp *kmsg.ProduceResponse, tp *kafkaTxnPending) {
	stored := map[int32]bool{}
	for _, t := range resp.Topics {
		if p.topicName(t.Topic, t.TopicID) != KafkaOutTopic {
			continue
		}
		for _, pt := range t.Partitions {
			stored[pt.Partition] = pt.ErrorCode == 0
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.txnOf(tp.id, tp.producer, tp.epoch)
	for _, o := range tp.outs {
		if stored[o.partition] {
			t.outs = append(t.outs, o)
		}
	}
}

// txnCommit reads a TxnOffsetCommit: the offsets of the input it stages
// count once the broker takes them, and are acks only when the
// transaction commits.
func (p *kafkaProxy) txnCommit(f kafkaFrame) (out, back []byte, after []func(), cut bool, pend *kafkaPending) {
	out = f.raw
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.SetVersion(f.ver)
	if req.ReadFrom(f.body) != nil {
		return out, nil, nil, false, nil
	}
	tp := &kafkaTxnPending{id: req.TransactionalID, producer: req.ProducerID, epoch: req.ProducerEpoch,
		offsets: map[int32]int64{}, group: req.Group, gen: req.Generation}
	for _, t := range req.Topics {
		if p.topicName(t.Topic, t.TopicID) != KafkaInTopic {
			continue
		}
		for _, pt := range t.Partitions {
			tp.offsets[pt.Partition] = pt.Offset
		}
	}
	return out, nil, nil, false, &kafkaPending{key: f.key, ver: f.ver, txn: tp}
}

// txnCommitted keeps the offsets the broker staged; a refusal (the
// member's generation is over: ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID) is
// recorded.
func (p *kafkaProxy) txnCommitted(c *kafkaConn, resp *kmsg.TxnOffsetCommitResponse, tp *kafkaTxnPending) {
	if tp == nil {
		return
	}
	var refused []string
	p.mu.Lock()
	t := p.txnOf(tp.id, tp.producer, tp.epoch)
	for _, rt := range resp.Topics {
		if p.topics[rt.TopicID] != KafkaInTopic && rt.Topic != KafkaInTopic {
			continue
		}
		for _, pt := range rt.Partitions {
			off, ok := tp.offsets[pt.Partition]
			if !ok {
				continue
			}
			if pt.ErrorCode != 0 {
				refused = append(refused, fmt.Sprintf("%s/%d at offset %d: %v", KafkaInTopic, pt.Partition, off, kerr.ErrorForCode(pt.ErrorCode)))
				continue
			}
			t.offsets[pt.Partition] = off
			t.group, t.gen = tp.group, tp.gen
		}
	}
	p.mu.Unlock()
	if th, ok := p.hooks.(kafkaTxnHooks); ok && len(refused) > 0 {
		th.txnNote(&c.proxyConn, fmt.Sprintf("the broker refused the TxnOffsetCommit of transactional id %s (group %s, generation %d): %s",
			tp.id, tp.group, tp.gen, strings.Join(refused, ", ")))
	}
}

// endTxn judges an EndTxn: a commit covers the transaction's outputs and
// the deliveries below its staged offsets.
func (p *kafkaProxy) endTxn(c *kafkaConn, f kafkaFrame) (out, back []byte, after []func(), cut bool, pend *kafkaPending) {
	out = f.raw
	req := kmsg.NewPtrEndTxnRequest()
	req.SetVersion(f.ver)
	th, ok := p.hooks.(kafkaTxnHooks)
	if req.ReadFrom(f.body) != nil || !ok {
		return out, nil, nil, false, nil
	}
	tp := &kafkaTxnPending{id: req.TransactionalID, producer: req.ProducerID, epoch: req.ProducerEpoch, commit: req.Commit}
	pend = &kafkaPending{key: f.key, ver: f.ver, txn: tp}
	if !req.Commit {
		return out, nil, nil, false, pend
	}
	p.mu.Lock()
	e := &kafkaTxnEnd{where: fmt.Sprintf("EndTxn(commit) of transactional id %s, producer %d epoch %d", req.TransactionalID, req.ProducerID, req.ProducerEpoch)}
	if t := p.txns[req.TransactionalID]; t != nil && t.producer == req.ProducerID && t.epoch == req.ProducerEpoch {
		e.outs = slices.Clone(t.outs)
		for _, part := range slices.Sorted(maps.Keys(t.offsets)) {
			for _, o := range p.open {
				if o.gen == c.gen && o.partition == part && o.offset < t.offsets[part] {
					e.tokens = append(e.tokens, o.token)
				}
			}
		}
		if len(t.offsets) > 0 {
			var offs []string
			for _, part := range slices.Sorted(maps.Keys(t.offsets)) {
				offs = append(offs, fmt.Sprintf("%s/%d at offset %d", KafkaInTopic, part, t.offsets[part]))
			}
			e.where += fmt.Sprintf(", its TxnOffsetCommit %s (group %s, generation %d)", strings.Join(offs, ", "), t.group, t.gen)
		}
	}
	p.mu.Unlock()
	if v := th.txnEnding(&c.proxyConn, e); v.cut {
		return nil, nil, nil, true, nil
	}
	tp.end = e
	return out, nil, nil, false, pend
}

// txnEnded records what the broker did with an EndTxn and forgets the
// transaction; a commit closes the deliveries it acked.
func (p *kafkaProxy) txnEnded(c *kafkaConn, f kafkaFrame, resp *kmsg.EndTxnResponse, tp *kafkaTxnPending) (out []byte, after func(), cut bool) {
	out, after = f.raw, func() {}
	if tp == nil {
		return out, after, false
	}
	p.mu.Lock()
	if t := p.txns[tp.id]; t != nil && t.producer == tp.producer && t.epoch == tp.epoch {
		delete(p.txns, tp.id)
	}
	p.mu.Unlock()
	if !tp.commit {
		if resp.ErrorCode == 0 {
			p.abandon(c, fmt.Sprintf("the process aborted its transaction (EndTxn(abort) of transactional id %s, producer %d epoch %d)", tp.id, tp.producer, tp.epoch))
		}
		return out, after, false
	}
	th, ok := p.hooks.(kafkaTxnHooks)
	if tp.end == nil || !ok {
		return out, after, false
	}
	committed := resp.ErrorCode == 0
	detail := "the broker committed the transaction: " + tp.end.where
	if !committed {
		detail = fmt.Sprintf("the broker refused the %s: %v; its %s and its offsets do not count",
			tp.end.where, kerr.ErrorForCode(resp.ErrorCode), kafkaCount(len(tp.end.outs), "output"))
	}
	v := th.txnEnded(&c.proxyConn, tp.end, committed, detail)
	if committed {
		for _, token := range tp.end.tokens {
			p.close1(token)
		}
	}
	if !committed {
		p.abandon(c, "the broker refused the process's EndTxn(commit) of transactional id "+tp.id)
	}
	if v.cut {
		return nil, after, true
	}
	if committed && tp.end.lost != nil {
		// The response is lost: the connection closes under the
		// request, and the producer retries it.
		return nil, after, true
	}
	return out, after, false
}

// abandon ends the process's open deliveries when its transaction ended
// without committing, recorded as given back (nacks): its offsets are not
// committed, the client goes back to the committed ones (franz-go's
// GroupTransactSession does after every abort), and the records come
// again, to it or to the partition's next owner.
func (p *kafkaProxy) abandon(c *kafkaConn, why string) {
	p.mu.Lock()
	var gone []kafkaOpen
	for _, o := range p.open {
		if o.gen == c.gen {
			gone = append(gone, o)
		}
	}
	p.mu.Unlock()
	for _, o := range gone {
		p.hooks.acked(&c.proxyConn, o.token, true, fmt.Sprintf("%s: offset %d of %s/%d is not committed, and the record comes again", why, o.offset, KafkaInTopic, o.partition))
		p.close1(o.token)
	}
}

// txnProduce implements kafkaTxnHooks: the output is attributed as a
// publish would be, and numbered among its attempt's outputs; a
// publish-failure rejected at that number refuses the Produce.
func (rn *run) txnProduce(c *proxyConn, o output) (kafkaTxnOut, verdict) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	p := rn.procs[c.index]
	if p.gen != c.gen || p.dead {
		return kafkaTxnOut{}, verdict{cut: true}
	}
	key := o.cause
	if m, ok := rn.sent[o.cause]; ok {
		key = m.Key
	}
	var a *attempt
	for _, x := range slices.Backward(p.open) {
		if x.msg.Key == key {
			a = x
			break
		}
	}
	if a == nil && p.latest != nil && p.latest.msg.Key == key {
		a = p.latest
	}
	to := kafkaTxnOut{o: o, a: a}
	if a == nil {
		return to, verdict{}
	}
	to.index = a.publishes
	a.publishes++
	for _, fl := range a.faults {
		if fl.Kind == faults.PublishFailure && fl.Variant == faults.Rejected && fl.Index == to.index {
			rn.add(histories.Event{Kind: histories.Refused, Attempt: a.n, Process: p.name(), Fault: string(fl.Kind), Detail: Describe(fl) + " (a Produce inside a transaction: nothing stored)"})
			return to, verdict{refuse: true}
		}
	}
	return to, verdict{}
}

// txnEnding implements kafkaTxnHooks: the crashes before the EndTxn
// reaches the broker strike here; the crashes after it, and a lost
// response, are noted for its response; a pause at the ack holds it.
func (rn *run) txnEnding(c *proxyConn, e *kafkaTxnEnd) verdict {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	p := rn.procs[c.index]
	if p.gen != c.gen || p.dead {
		return verdict{cut: true}
	}
	held := "the " + e.where + ", held"
	for _, o := range e.outs {
		if o.a == nil || !slices.Contains(p.open, o.a) {
			continue
		}
		for _, fl := range o.a.faults {
			if fl.Index != o.index {
				continue
			}
			switch {
			case fl.Kind == faults.Crash && fl.Point == faults.BeforePublish:
				rn.killAt(p, o.a, fl, "the proxy dropped "+strings.TrimPrefix(held, "the ")+" for output "+o.o.id)
				return verdict{cut: true}
			case fl.Kind == faults.Crash && fl.Point == faults.AfterPublish && e.strike == nil:
				e.strike = &strike{o.a, fl, "the broker's response held to the " + e.where}
			case fl.Kind == faults.PublishFailure && fl.Variant == faults.LostConfirm && e.lost == nil:
				f := fl
				e.lost = &f
			}
		}
	}
	var pauses []*attempt
	for _, token := range e.tokens {
		a := rn.byToken[token]
		if a == nil || !slices.Contains(p.open, a) {
			continue
		}
		for _, fl := range a.faults {
			switch {
			case fl.Kind == faults.Crash && fl.Point == faults.BeforeAck:
				rn.killAt(p, a, fl, "the proxy dropped "+strings.TrimPrefix(held, "the "))
				return verdict{cut: true}
			case fl.Kind == faults.Crash && fl.Point == AfterAck && e.strike == nil:
				e.strike = &strike{a, fl, "the broker's response held to the " + e.where}
			case fl.Kind == faults.Redelivery && fl.Variant == faults.AckLost && e.lost == nil:
				f := fl
				e.lost = &f
			case fl.Kind == faults.Redelivery && fl.Variant == faults.LeaseExpired && fl.Index == 1:
				pauses = append(pauses, a)
			}
		}
	}
	for _, a := range pauses {
		for _, fl := range a.faults {
			if fl.Kind != faults.Redelivery || fl.Variant != faults.LeaseExpired || fl.Index != 1 {
				continue
			}
			rn.busy++
			rn.mu.Unlock()
			rn.pause(p, a, fl) // the EndTxn waits, then goes
			rn.mu.Lock()
			rn.notePause(p, a, held)
			if p.dead || p.gen != c.gen {
				return verdict{cut: true}
			}
		}
	}
	return verdict{}
}

// txnEnded implements kafkaTxnHooks: a committed transaction's outputs
// are publishes and the deliveries it covers are acked, in that order;
// then a crash after the EndTxn strikes, or the response is lost.
func (rn *run) txnEnded(c *proxyConn, e *kafkaTxnEnd, committed bool, detail string) verdict {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	p := rn.procs[c.index]
	alive := p.gen == c.gen && !p.dead
	if !committed {
		rn.add(histories.Event{Kind: histories.Refused, Process: p.name(), Detail: detail})
		return verdict{}
	}
	for _, o := range e.outs {
		rn.txnPublish(p, o, e.where)
	}
	for _, token := range e.tokens {
		a := rn.byToken[token]
		if a == nil {
			continue
		}
		if alive && slices.Contains(p.open, a) {
			rn.end(p, a, histories.Ack, detail)
			continue
		}
		// Its process died with the EndTxn in flight: the broker's commit
		// acks it all the same.
		rn.add(histories.Event{Kind: histories.Ack, Attempt: a.n, Process: p.name(), Detail: detail + " (its process ended before the response came back)"})
		a.acked = true
	}
	if !alive {
		return verdict{cut: true}
	}
	if e.lost != nil {
		n := 0
		for _, token := range e.tokens {
			if a := rn.byToken[token]; a != nil {
				n = a.n
			}
		}
		for _, o := range e.outs {
			if o.a != nil && n == 0 {
				n = o.a.n
			}
		}
		rn.add(histories.Event{Kind: histories.Refused, Attempt: n, Process: p.name(), Fault: string(e.lost.Kind),
			Detail: Describe(*e.lost) + "; on a transactional producer, a lost EndTxn response: the broker committed the transaction, the proxy drops its response and closes the connection, and the producer retries the EndTxn, which the broker answers from the transaction it ended"})
	}
	if e.strike != nil {
		rn.killAt(p, e.strike.a, e.strike.fl, e.strike.where)
		return verdict{cut: true}
	}
	return verdict{}
}

// txnNote implements kafkaTxnHooks.
func (rn *run) txnNote(c *proxyConn, detail string) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	rn.add(histories.Event{Kind: histories.Refused, Process: rn.procs[c.index].name(), Detail: detail})
}

// txnPublish records an output of a committed transaction; rn.mu is held.
func (rn *run) txnPublish(p *proc, o kafkaTxnOut, where string) {
	key := o.o.cause
	if m, ok := rn.sent[o.o.cause]; ok {
		key = m.Key
	}
	id := o.o.id
	if id == "" {
		id = fmt.Sprintf("%s/no-id-%d", p.name(), len(rn.events)+1)
	}
	payload, err := model.Canonical(o.o.body)
	if err != nil {
		payload, _ = json.Marshal(string(o.o.body))
	}
	out := model.Message{ID: id, Type: o.o.typ, Payload: payload, Causation: key}
	ev := histories.Event{Kind: histories.Publish, Process: p.name(), Message: &out, Detail: "committed by the " + where}
	if o.a != nil {
		ev.Attempt = o.a.n
	} else {
		ev.Detail += "; no open delivery of this process had the cause " + strconv.Quote(o.o.cause) + " when it was produced"
	}
	rn.add(ev)
}
