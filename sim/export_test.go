package sim

import (
	"fmt"

	"github.com/oncecheck/oncecheck/model"
)

// LogModel drives the log broker's rules (logBroker, the code a run's
// consumers go through) one broker-level operation at a time, without a
// runner, for the conformance test against franz-go's kfake
// (kafka_conformance_test.go). Consumers are numbered from 0, as processes
// are.
type LogModel struct {
	b     *logBroker
	hold  []logPos // by consumer, the copy it works on; part -1: none
	acked []bool
}

// NewLogModel returns the log broker of a run with the given consumers,
// none of them a member yet.
func NewLogModel(consumers int) *LogModel {
	l := &LogModel{b: newLogBroker(consumers), hold: make([]logPos, consumers), acked: make([]bool, consumers)}
	for c := range l.hold {
		l.hold[c].part = -1
	}
	return l
}

// Produce appends a message of the aggregate, as the sender does, and
// returns where it went.
func (l *LogModel) Produce(aggregate string) (part, offset int) {
	return l.b.produce(model.Message{ID: fmt.Sprintf("m%d", l.b.seq+1), Aggregate: aggregate})
}

// Member reports whether consumer c is a member of the group.
func (l *LogModel) Member(c int) bool { return l.b.member[c] }

// Holding returns the copy consumer c works on, if any.
func (l *LogModel) Holding(c int) (part, offset int, ok bool) {
	h := l.hold[c]
	return h.part, h.offset, h.part >= 0
}

// Acked reports whether consumer c committed the copy it holds.
func (l *LogModel) Acked(c int) bool { return l.acked[c] }

// Join makes consumer c a member (a rebalance), as a run's consumer that
// is not one does before it takes a copy.
func (l *LogModel) Join(c int) { l.b.join(c) }

// CanTake reports whether consumer c, idle, has a copy to take (the
// scheduler's test).
func (l *LogModel) CanTake(c int) bool { return l.b.canTake(c) }

// Peek returns the partition consumer c, a member, would take its next
// copy from.
func (l *LogModel) Peek(c int) (part int, ok bool) {
	heads := l.b.heads(c)
	if len(heads) == 0 {
		return 0, false
	}
	return heads[0], true
}

// Take hands consumer c, a member, the copy a run's consumer takes
// without a reorder fault; lose loses its fetch position at once (a
// broker duplicate). ok is false if it has none to take.
func (l *LogModel) Take(c int, lose bool) (part, offset int, aggregate string, ok bool) {
	heads := l.b.heads(c)
	if len(heads) == 0 {
		return 0, 0, "", false
	}
	msg, pos := l.b.take(heads[0])
	l.hold[c], l.acked[c] = pos, false
	if lose {
		l.b.rewind(pos)
	}
	return pos.part, pos.offset, msg.Aggregate, true
}

// Commit is consumer c's ack of the copy it holds: the commit of the
// offset after it, or its rejection ("UNKNOWN_MEMBER_ID").
func (l *LogModel) Commit(c int) string {
	h := l.hold[c]
	l.acked[c] = true
	return l.CommitAt(c, h.part, h.offset+1)
}

// CommitLost is consumer c's ack of the copy it holds whose commit never
// reaches the coordinator.
func (l *LogModel) CommitLost(c int) { l.acked[c] = true }

// CommitAt is an offset commit of consumer c for any partition and
// offset; it returns "" or the coordinator's rejection.
func (l *LogModel) CommitAt(c, part, offset int) string {
	if reject := l.b.rejection(c); reject != "" {
		return reject
	}
	l.b.commit(part, offset)
	return ""
}

// Done ends consumer c's attempt: unless it committed, it seeks back to
// its copy (a nack), as a run's consumer does when its handler returns.
func (l *LogModel) Done(c int) {
	pos := l.hold[c]
	l.hold[c].part = -1
	if !l.acked[c] {
		l.b.seek(c, pos)
	}
}

// Crash takes consumer c out of the group (if it is still a member) with
// the copy in hand.
func (l *LogModel) Crash(c int) {
	l.hold[c].part = -1
	l.b.leave(c)
}

// Expel takes consumer c out of the group while it works on its copy (an
// expired session): it goes on as a zombie.
func (l *LogModel) Expel(c int) { l.b.expel(c) }

// Committed returns the committed offset of each partition.
func (l *LogModel) Committed() []int {
	out := make([]int, len(l.b.parts))
	for i := range l.b.parts {
		out[i] = l.b.parts[i].committed
	}
	return out
}

// Owners returns each partition's owner (-1: none).
func (l *LogModel) Owners() []int {
	out := make([]int, len(l.b.parts))
	for i := range l.b.parts {
		out[i] = l.b.parts[i].owner
	}
	return out
}
