package sim

import (
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// The brokers a run can have (Config.Broker).
const (
	// BrokerQueue is the per-message broker: each copy is acked on its
	// own; a nacked, crashed or lost copy goes back to the tail of one
	// queue (a lease-expired one to its head).
	BrokerQueue = "queue"
	// BrokerLog is a partitioned log consumed by a consumer group, as
	// Kafka's classic group protocol does it: an aggregate's messages go
	// to one partition, a partition is consumed in offset order by one
	// member at a time, an ack commits the partition's offset (a prefix),
	// and a crash or an expired session moves partitions to the members
	// left, which restart from the committed offsets (docs/design.md,
	// "The log broker").
	BrokerLog = "log"
)

// Brokers lists the brokers, the default first.
func Brokers() []string { return []string{BrokerQueue, BrokerLog} }

// ParseBroker returns the broker a name means ("" is BrokerQueue).
func ParseBroker(s string) (string, error) {
	switch s {
	case "", BrokerQueue:
		return BrokerQueue, nil
	case BrokerLog:
		return BrokerLog, nil
	}
	return "", fmt.Errorf("unknown broker %q (known: %s)", s, strings.Join(Brokers(), ", "))
}

// LogPartitions is the number of partitions of the log broker's topic:
// enough that a workload's aggregates spread over several, and that two
// consumers each own some.
const LogPartitions = 3

// Partition returns the partition of the log broker's topic that an
// aggregate's messages go to: FNV-1a of the aggregate, modulo
// LogPartitions (Kafka's default partitioner hashes the key the same way
// in spirit, with murmur2).
func Partition(aggregate string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(aggregate))
	return int(h.Sum32() % LogPartitions)
}

// ErrCommitRejected is returned by Env.Ack on the log broker when the
// group coordinator rejects the offset commit of a member it expelled
// (UNKNOWN_MEMBER_ID). It is an ErrAckRefused too (errors.Is).
var ErrCommitRejected error = commitRejected{}

type commitRejected struct{}

func (commitRejected) Error() string { return "offset commit rejected by the group coordinator" }

// Is makes a rejected commit a refused ack.
func (commitRejected) Is(target error) bool { return target == ErrAckRefused }

// entry is a message at an offset of a partition; seq orders the entries
// of all partitions by the time they were appended.
type entry struct {
	msg model.Message
	seq int
}

// partition is one partition of the log, and the group's state for it.
type partition struct {
	log       []entry
	committed int // the group's committed offset: the next offset to consume
	owner     int // the consumer (process index) it is assigned to, -1: none
	// position is the owner's fetch position; -1 (after a rebalance):
	// the committed offset when the owner first reads the partition.
	position int
}

// next returns the offset the owner reads next.
func (q *partition) next() int {
	if q.position < 0 {
		return q.committed
	}
	return q.position
}

// logBroker is the log broker (BrokerLog) of a run: the topic's
// partitions and the consumer group. It is the whole of the model's
// rules, as a plain state machine that knows no runner (the runner
// records what it does, and the conformance test in
// kafka_conformance_test.go drives it beside franz-go's kfake).
type logBroker struct {
	parts      []partition
	seq        int
	generation int
	member     []bool // by consumer process index
}

// logPos is where an attempt's copy came from on the log broker.
type logPos struct {
	part, offset, generation int
}

func newLogBroker(consumers int) *logBroker {
	b := &logBroker{parts: make([]partition, LogPartitions), member: make([]bool, consumers)}
	for i := range b.parts {
		b.parts[i].owner = -1
	}
	return b
}

// produce appends m to its partition.
func (b *logBroker) produce(m model.Message) (part, offset int) {
	part = Partition(m.Aggregate)
	p := &b.parts[part]
	p.log = append(p.log, entry{msg: m, seq: b.seq})
	b.seq++
	return part, len(p.log) - 1
}

// assignment returns the owner of each partition with the given members:
// the round-robin assignor over the members in process order.
func assignment(member []bool) []int {
	var ms []int
	for i, in := range member {
		if in {
			ms = append(ms, i)
		}
	}
	out := make([]int, LogPartitions)
	for i := range out {
		out[i] = -1
		if len(ms) > 0 {
			out[i] = ms[i%len(ms)]
		}
	}
	return out
}

// rebalance starts a new generation of the group with its current members
// (the eager protocol: every partition is revoked and assigned again, and
// each restarts from the offset committed when its owner first reads it).
// It completes at once: a member that works on a copy rejoins in the
// background, as franz-go's client does by default, so the partition's
// new owner may read that copy again while it still works on it.
func (b *logBroker) rebalance() {
	b.generation++
	owners := assignment(b.member)
	for i := range b.parts {
		b.parts[i].owner, b.parts[i].position = owners[i], -1
	}
}

// join makes the consumers members of the group, in one rebalance.
func (b *logBroker) join(cs ...int) {
	for _, c := range cs {
		b.member[c] = true
	}
	b.rebalance()
}

// leave takes consumer c out of the group, if it is a member (a crash),
// and rebalances; it reports whether c was a member.
func (b *logBroker) leave(c int) bool {
	if !b.member[c] {
		return false
	}
	b.member[c] = false
	b.rebalance()
	return true
}

// expel takes consumer c out of the group while it works on its copy (its
// session expired): the group rebalances, and c, a zombie, goes on.
func (b *logBroker) expel(c int) {
	b.member[c] = false
	b.rebalance()
}

// readable returns the partitions consumer c, a member, can read a copy
// from now.
func (b *logBroker) readable(c int) []int {
	var out []int
	for i := range b.parts {
		if q := &b.parts[i]; q.owner == c && q.next() < len(q.log) {
			out = append(out, i)
		}
	}
	return out
}

// canTake reports whether consumer c, idle, has a copy to take: one of its
// partitions has one past its position, or, if it is not a member, it
// would own such a partition from its committed offset once it joined.
func (b *logBroker) canTake(c int) bool {
	if b.member[c] {
		return len(b.readable(c)) > 0
	}
	joined := slices.Clone(b.member)
	joined[c] = true
	for i, owner := range assignment(joined) {
		if q := &b.parts[i]; owner == c && q.committed < len(q.log) {
			return true
		}
	}
	return false
}

// heads returns the partitions consumer c, a member, can read, the one
// whose next copy was appended first first.
func (b *logBroker) heads(c int) []int {
	heads := b.readable(c)
	slices.SortFunc(heads, func(x, y int) int {
		return b.parts[x].log[b.parts[x].next()].seq - b.parts[y].log[b.parts[y].next()].seq
	})
	return heads
}

// take hands a member the next copy of partition part, one of its own.
func (b *logBroker) take(part int) (model.Message, logPos) {
	q := &b.parts[part]
	pos := logPos{part: part, offset: q.next(), generation: b.generation}
	q.position = pos.offset + 1
	return q.log[pos.offset].msg, pos
}

// rewind is a lost fetch position: the partition of pos is read again from
// its committed offset, or from pos's, if that is before it. It returns
// the new position.
func (b *logBroker) rewind(pos logPos) int {
	q := &b.parts[pos.part]
	q.position = min(q.committed, pos.offset)
	return q.position
}

// rejection says why the coordinator rejects consumer c's offset commit,
// "" if it accepts it. The coordinator accepts a commit only from a
// member (UNKNOWN_MEMBER_ID otherwise). A member still in the group
// commits even if the group rebalanced since it fetched the copy: it
// rejoined in the background and commits with the new generation, so
// ILLEGAL_GENERATION does not arise; and the coordinator does not check
// that the member owns the partition, so the commit of a copy whose
// partition moved away is accepted, and may move the committed offset
// back.
func (b *logBroker) rejection(c int) string {
	if !b.member[c] {
		return "UNKNOWN_MEMBER_ID"
	}
	return ""
}

// commit sets the committed offset of partition part to offset: it
// overwrites it, as Kafka's coordinator does, even with a lower one.
func (b *logBroker) commit(part, offset int) { b.parts[part].committed = offset }

// seek is consumer c's seek back to the offset of its copy at pos (a nack):
// if c is still the partition's owner in the generation it fetched the
// copy in, the copy is the partition's next one again.
func (b *logBroker) seek(c int, pos logPos) {
	q := &b.parts[pos.part]
	if b.member[c] && pos.generation == b.generation && q.owner == c {
		q.position = pos.offset
	}
}

// recordRebalance records the rebalance the log broker just made.
func (r *runner) recordRebalance(why, fault string) {
	b := r.log
	var parts []string
	for i := range b.parts {
		p := &b.parts[i]
		who := "nobody"
		if p.owner >= 0 {
			who = r.procs[p.owner].name
		}
		parts = append(parts, fmt.Sprintf("partition %d to %s from offset %d", i, who, p.committed))
	}
	detail := fmt.Sprintf("rebalance to generation %d (%s): %s", b.generation, why, strings.Join(parts, ", "))
	for _, q := range r.procs {
		if q.kind == faults.Consumer && q.task != nil && q.task.env.attempt != 0 && b.member[q.index] {
			detail += fmt.Sprintf("; %s rejoins while it works on attempt %d", q.name, q.task.env.attempt)
		}
	}
	r.record(histories.Event{Kind: histories.Requeue, Process: "broker", Fault: fault, Detail: detail})
}

// logTake hands consumer p the next copy of its partitions: p joins the
// group first if it is not a member (a restarted or expelled consumer).
// It takes the head of the partition whose head was appended first, or,
// with a reorder fault, the head of another of its partitions (the log
// keeps order within a partition only).
func (r *runner) logTake(p *process, at int, ev *histories.Event) (model.Message, logPos) {
	b := r.log
	if !b.member[p.index] {
		b.join(p.index)
		r.recordRebalance(p.name+" joins the group", "")
	}
	heads := b.heads(p.index)
	for d := 1; d <= min(faults.ReorderWindow, len(heads)-1); d++ {
		r.offer(faults.Fault{Kind: faults.Reorder, At: at, Index: d})
	}
	idx := min(r.cfg.Plan.ReorderAt(at), len(heads)-1)
	msg, pos := b.take(heads[idx])
	ev.Detail = fmt.Sprintf("partition %d, offset %d, generation %d", pos.part, pos.offset, pos.generation)
	if idx > 0 {
		ev.Detail += fmt.Sprintf("; reordered: the head of another partition, %d behind the first", idx)
		ev.Fault = string(faults.Reorder)
	}
	return msg, pos
}

// logRewind is a broker duplicate on the log broker: the consumer's fetch
// position falls back to the partition's committed offset (a lost fetch
// position, a consumer that re-seeks), so the copy in hand and every
// uncommitted one after it are delivered again.
func (r *runner) logRewind(e *env) {
	from := r.log.rewind(e.pos)
	r.record(histories.Event{Kind: histories.Requeue, Process: "broker", Attempt: e.attempt, Fault: string(faults.Redelivery),
		Detail: fmt.Sprintf("fetch position lost: partition %d is read again from offset %d, %s included", e.pos.part, from, e.msg.ID)})
}

// logExpire is the expiry of the session of e's consumer while it works on
// its copy: the coordinator expels it and rebalances; the consumer goes on
// as a zombie whose commit will be rejected.
func (r *runner) logExpire(e *env, step int) {
	e.leaseExpired = true
	r.log.expel(e.proc.index)
	r.recordRebalance(fmt.Sprintf("the session of %s expired while it works on attempt %d, at its step %d", e.proc.name, e.attempt, step+1),
		string(faults.Redelivery))
}

// logLeave takes a crashed consumer out of the group: its partitions move
// to the members left, from their committed offsets.
func (r *runner) logLeave(e *env) {
	if r.log.leave(e.proc.index) {
		r.recordRebalance(e.proc.name+" crashed", "")
	}
}

// logCommit is an ack on the log broker: the commit of the offset after
// the copy's, which commits every offset before it too, unless the
// coordinator rejects it (logBroker.rejection) or the commit is lost.
func (e *env) logCommit() error {
	r := e.r
	b := r.log
	reject := b.rejection(e.proc.index)
	if reject == "" {
		r.offer(faults.Fault{Kind: faults.Redelivery, At: e.at})
	}
	e.acked = true
	ack := e.base(histories.Ack)
	ack.Detail = fmt.Sprintf("commit partition %d offset %d", e.pos.part, e.pos.offset+1)
	r.record(ack)
	switch {
	case reject != "":
		reject += ": " + e.proc.name + " is no longer a member of the group"
		ev := e.base(histories.Refused)
		ev.Detail = "offset commit rejected: " + reject
		r.record(ev)
		return fmt.Errorf("%w: %s", ErrCommitRejected, reject)
	case r.cfg.Plan.LosesAck(e.at):
		ev := e.base(histories.AckLost)
		ev.Fault, ev.Detail = string(faults.Redelivery), "the offset commit was lost: the committed offset stays"
		r.record(ev)
		return nil
	}
	b.commit(e.pos.part, e.pos.offset+1)
	return nil
}

// logNack is a nack on the log broker, which has none: the consumer seeks
// back to the copy's offset, so that it is fetched again next, before the
// ones after it. A consumer that is no longer the partition's owner in
// the generation it fetched in has nothing to seek.
func (r *runner) logNack(e *env) { r.log.seek(e.proc.index, e.pos) }

// logStuck describes what a stuck run left on the log.
func (r *runner) logStuck() (int, []string) {
	n := 0
	var left []string
	for i := range r.log.parts {
		q := &r.log.parts[i]
		for o := q.committed; o < len(q.log); o++ {
			n++
			left = append(left, fmt.Sprintf("%s at %d/%d", q.log[o].msg.ID, i, o))
		}
	}
	return n, left
}

// errLogConfig says why a configuration cannot run on the log broker.
var errLogConfig = errors.New("sim: the log broker runs only scheduled runs of format 1.3 and later")
