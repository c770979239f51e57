package sim_test

// The conformance test of the log broker (sim/logbroker.go) against a real
// Kafka group coordinator: franz-go's kfake, run in process, spoken to
// with kmsg requests. The same sequence of broker-level operations runs on
// the model (sim.LogModel, the rules a run's consumers go through) and on
// kfake, and each operation must have the same outcome on both: where a
// produced message lands, which copy a member receives, whether a commit
// is accepted, what offset each partition has committed, which members
// the group has and who owns each partition. docs/design.md ("The log
// broker", "Checked against Kafka") lists what is checked and where kfake,
// Kafka and the model differ.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
	"pgregory.net/rapid"

	"github.com/oncecheck/oncecheck/sim"
)

// The operations of a scenario.
type opKind int

const (
	opProduce    opKind = iota // the sender appends a message of agg
	opJoin                     // consumer c joins the group
	opTake                     // consumer c, a member, takes its next copy
	opTakeLost                 // opTake, then c loses its fetch position
	opCommit                   // c commits the offset after the copy it holds
	opCommitLost               // c's commit of its copy is lost on the way
	opCommitAt                 // c commits offset off of partition part
	opDone                     // c's attempt ends (a nack unless it committed)
	opCrash                    // c crashes with its copy: it leaves the group
	opExpel                    // c's session expires while it works: a zombie
)

var opNames = [...]string{"produce", "join", "take", "take-lost", "commit", "commit-lost", "commit-at", "done", "crash", "expel"}

type op struct {
	kind      opKind
	c         int
	agg       string
	part, off int
}

func (o op) String() string {
	switch o.kind {
	case opProduce:
		return "produce " + o.agg
	case opCommitAt:
		return fmt.Sprintf("commit-at c%d %d/%d", o.c, o.part, o.off)
	}
	return fmt.Sprintf("%s c%d", opNames[o.kind], o.c)
}

// conformanceTimeout bounds every wait on kfake: a request that parks (a
// JoinGroup waiting for the other members) and a member that learns of a
// rebalance by heartbeat.
const conformanceTimeout = 10 * time.Second

// tb is what a scenario fails through: a *testing.T or a *rapid.T.
type tb interface {
	require.TestingT
	Helper()
	Fatalf(format string, args ...any)
}

// cluster is a kfake cluster shared by the scenarios: each runs on a
// topic and a group of its own, with a client of its own per consumer.
type cluster struct {
	fake      *kfake.Cluster
	admin     *kgo.Client // produces, reads committed offsets, expels
	scenarios int         // scenarios started, which name their topics and groups
}

// maxConsumers is the most consumers a scenario has.
const maxConsumers = 3

func newCluster(t testing.TB) *cluster {
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(fake.Close)
	c := &cluster{fake: fake}
	c.admin, err = c.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	t.Cleanup(c.admin.Close)
	return c
}

// client returns a client of the cluster speaking Kafka 3.0's request
// versions (Fetch by topic name, v12).
func (c *cluster) client(opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.fake.ListenAddrs()...), kgo.MaxVersions(kversion.V3_0_0())}, opts...)...)
}

// kcopy is a copy a kfake member holds.
type kcopy struct {
	part  int32
	off   int64
	gen   int32
	acked bool
}

// kmember is a consumer on kfake: the client's view of its membership
// (member ID, generation, assignment, fetch positions) and the
// coordinator's (in: the group has it).
type kmember struct {
	cl       *kgo.Client
	id       string
	gen      int32
	in       bool
	assigned []int32
	pos      map[int32]int64 // absent: the committed offset when first read
	hold     *kcopy
	join     chan *kmsg.JoinGroupResponse // a JoinGroup in flight, parked until the rebalance completes
}

// kafkaSide runs a scenario's operations on kfake as a consumer group
// does with the classic protocol and franz-go's client: members join,
// learn of a rebalance by heartbeat and rejoin at once (a member that
// works on a copy too, in the background), the leader assigns partitions
// round-robin in consumer order in SyncGroup, and a member reads each
// partition from the committed offset after every rebalance (eager).
type kafkaSide struct {
	t       tb
	ctx     context.Context
	c       *cluster
	topic   string
	group   string
	members []*kmember
	pending bool  // a rebalance is under way: not every member has rejoined
	group0  []int // the members of the last generation, from the leader's JoinGroup response
	owners  []int // each partition's owner in it
	trace   *[]string
}

// side starts a scenario with the given consumers on a topic and a group
// of its own.
func (c *cluster) side(t tb, consumers int) *kafkaSide {
	c.scenarios++
	k := &kafkaSide{t: t, ctx: context.Background(), c: c,
		topic: fmt.Sprintf("t%d", c.scenarios), group: fmt.Sprintf("g%d", c.scenarios)}
	req := kmsg.NewCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = k.topic, sim.LogPartitions, 1
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(k.ctx, c.admin)
	require.NoError(t, err)
	require.NoError(t, kerr.ErrorForCode(resp.Topics[0].ErrorCode))
	for range consumers {
		// A client, and so a connection, per consumer: a JoinGroup parked
		// until the rebalance completes holds up no other consumer.
		cl, err := c.client()
		require.NoError(t, err)
		k.members = append(k.members, &kmember{cl: cl})
	}
	return k
}

// close closes the consumers' clients, and with them any JoinGroup still
// parked.
func (k *kafkaSide) close() {
	for _, m := range k.members {
		m.cl.Close()
	}
}

func (k *kafkaSide) produce(agg string, seq int) (int, int) {
	part := sim.Partition(agg)
	r, err := k.c.admin.ProduceSync(k.ctx, &kgo.Record{Topic: k.topic, Partition: int32(part), Key: []byte(agg), Value: []byte(strconv.Itoa(seq))}).First()
	require.NoError(k.t, err)
	return int(r.Partition), int(r.Offset)
}

func (k *kafkaSide) joinRequest(m *kmember) *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.Group, req.MemberID, req.ProtocolType = k.group, m.id, "consumer"
	// Sessions and rebalances outlast a scenario: a member leaves only
	// when a scenario says so.
	req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 60_000, 60_000
	meta := kmsg.ConsumerMemberMetadata{Topics: []string{k.topic}}
	p := kmsg.NewJoinGroupRequestProtocol()
	p.Name, p.Metadata = "roundrobin", meta.AppendTo(nil)
	req.Protocols = append(req.Protocols, p)
	return req
}

// rejoin sends m's JoinGroup, which parks until every member has joined.
func (k *kafkaSide) rejoin(m *kmember) {
	req := k.joinRequest(m)
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	m.join = ch
	go func() {
		resp, err := req.RequestWith(k.ctx, m.cl)
		if err != nil {
			resp = kmsg.NewPtrJoinGroupResponse()
			resp.ErrorCode = -1
		}
		ch <- resp
	}()
}

// join is a consumer's first JoinGroup (MEMBER_ID_REQUIRED gives it its
// member ID), then its JoinGroup as that member, which starts a rebalance.
func (k *kafkaSide) join(c int) {
	m := k.members[c]
	m.id, m.gen, m.hold, m.pos, m.assigned = "", 0, nil, nil, nil
	resp, err := k.joinRequest(m).RequestWith(k.ctx, m.cl)
	require.NoError(k.t, err)
	require.Equal(k.t, kerr.MemberIDRequired.Code, resp.ErrorCode)
	m.id, m.in = resp.MemberID, true
	k.rejoin(m)
	// Until kfake has taken the JoinGroup in, the member is not in the
	// group: a rebalance that completes meanwhile would leave it out.
	deadline := time.Now().Add(conformanceTimeout)
	for !slices.Contains(k.groupMembers(), m.id) {
		require.True(k.t, time.Now().Before(deadline), "kfake did not take c%d's JoinGroup in", c)
		time.Sleep(time.Millisecond)
	}
	k.rebalancing()
}

// groupMembers returns the member IDs kfake's group has.
func (k *kafkaSide) groupMembers() []string {
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{k.group}
	resp, err := req.RequestWith(k.ctx, k.c.admin)
	require.NoError(k.t, err)
	require.Len(k.t, resp.Groups, 1)
	var ids []string
	for _, m := range resp.Groups[0].Members {
		ids = append(ids, m.MemberID)
	}
	return ids
}

// rebalancing: the group prepares a rebalance. Every member learns of it
// by heartbeat and rejoins, one that works on a copy too: it rejoins in
// the background, as franz-go's client does by default.
func (k *kafkaSide) rebalancing() {
	k.pending = true
	for _, m := range k.members {
		if !m.in || m.join != nil {
			continue
		}
		deadline := time.Now().Add(conformanceTimeout)
		for {
			req := kmsg.NewPtrHeartbeatRequest()
			req.Group, req.MemberID, req.Generation = k.group, m.id, m.gen
			resp, err := req.RequestWith(k.ctx, m.cl)
			require.NoError(k.t, err)
			if resp.ErrorCode == kerr.RebalanceInProgress.Code {
				break
			}
			require.Zero(k.t, resp.ErrorCode, "heartbeat: %v", kerr.ErrorForCode(resp.ErrorCode))
			require.True(k.t, time.Now().Before(deadline), "kfake did not start the rebalance")
			time.Sleep(time.Millisecond)
		}
		k.rejoin(m)
	}
	k.settle()
	require.False(k.t, k.pending, "every member rejoined: the rebalance is complete")
}

// settle completes the rebalance once every member has rejoined: the
// leader's SyncGroup carries the round-robin assignment, and every member
// reads its partitions from the committed offsets.
// (A test can keep a rebalance pending by sending a JoinGroup itself.)
func (k *kafkaSide) settle() {
	if !k.pending {
		return
	}
	var in []*kmember
	for _, m := range k.members {
		if m.in {
			if m.join == nil {
				return // a member has not rejoined yet: the rebalance waits for it
			}
			in = append(in, m)
		}
	}
	k.pending = false
	k.group0, k.owners = nil, nil
	if len(in) == 0 {
		return
	}
	byID := map[string]int{}
	for i, m := range k.members {
		byID[m.id] = i
	}
	// kfake (at the version go.mod pins) names a different leader in
	// each member's JoinGroup response when the previous leader did not
	// rejoin (completeRebalance picks the leader inside the loop that
	// fills the responses); only the last one named is the leader it
	// takes the assignment from. Every member told it leads sends the
	// assignment, which Kafka, with one leader, would take from that one.
	var leader *kmsg.JoinGroupResponse
	leads := map[*kmember]bool{}
	for _, m := range in {
		select {
		case resp := <-m.join:
			require.Zero(k.t, resp.ErrorCode, "join: %v", kerr.ErrorForCode(resp.ErrorCode))
			m.join, m.gen = nil, resp.Generation
			if resp.LeaderID == m.id {
				leader, leads[m] = resp, true
			}
		case <-time.After(conformanceTimeout):
			k.t.Fatalf("kfake did not complete the rebalance: %s", k.describe())
		}
	}
	require.NotNil(k.t, leader)
	for _, lm := range leader.Members {
		c, ok := byID[lm.MemberID]
		require.True(k.t, ok, "kfake has a member %s no consumer is", lm.MemberID)
		k.group0 = append(k.group0, c)
	}
	slices.Sort(k.group0)
	// The leader's assignor: round-robin over the members in consumer order.
	k.owners = make([]int, sim.LogPartitions)
	assigned := map[int][]int32{}
	for p := range k.owners {
		k.owners[p] = k.group0[p%len(k.group0)]
		assigned[k.owners[p]] = append(assigned[k.owners[p]], int32(p))
	}
	done := make(chan error, len(in))
	for _, m := range in {
		req := kmsg.NewPtrSyncGroupRequest()
		req.Group, req.MemberID, req.Generation = k.group, m.id, m.gen
		if leads[m] {
			for _, c := range k.group0 {
				a := kmsg.ConsumerMemberAssignment{Topics: []kmsg.ConsumerMemberAssignmentTopic{{Topic: k.topic, Partitions: assigned[c]}}}
				sa := kmsg.NewSyncGroupRequestGroupAssignment()
				sa.MemberID, sa.MemberAssignment = k.members[c].id, a.AppendTo(nil)
				req.GroupAssignment = append(req.GroupAssignment, sa)
			}
		}
		go func() {
			resp, err := req.RequestWith(k.ctx, m.cl)
			if err == nil {
				err = kerr.ErrorForCode(resp.ErrorCode)
			}
			if err == nil {
				var a kmsg.ConsumerMemberAssignment
				err = a.ReadFrom(resp.MemberAssignment)
				m.assigned = nil
				for _, t := range a.Topics {
					m.assigned = append(m.assigned, t.Partitions...)
				}
			}
			done <- err
		}()
	}
	for range in {
		require.NoError(k.t, <-done, "sync")
	}
	for _, m := range in {
		m.pos = map[int32]int64{}
		slices.Sort(m.assigned)
	}
}

// describe says what the consumers and kfake's group are, for a failure.
func (k *kafkaSide) describe() string {
	var b strings.Builder
	for i, m := range k.members {
		fmt.Fprintf(&b, "c%d %s in=%v gen=%d hold=%v joining=%v; ", i, m.id, m.in, m.gen, m.hold != nil, m.join != nil)
	}
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{k.group}
	resp, err := req.RequestWith(k.ctx, k.c.admin)
	if err != nil || len(resp.Groups) == 0 {
		return b.String() + fmt.Sprintf("describe: %v", err)
	}
	g := resp.Groups[0]
	fmt.Fprintf(&b, "kfake: %s %s", g.State, kerr.ErrorForCode(g.ErrorCode))
	for _, m := range g.Members {
		fmt.Fprintf(&b, " %s", m.MemberID)
	}
	if k.trace != nil {
		fmt.Fprintf(&b, "\nafter:\n%s", strings.Join(*k.trace, "\n"))
	}
	return b.String()
}

// committed reads the group's committed offsets (0 where none is).
func (k *kafkaSide) committed() []int {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = k.group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = k.topic
	for p := range sim.LogPartitions {
		rt.Partitions = append(rt.Partitions, int32(p))
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(k.ctx, k.c.admin)
	require.NoError(k.t, err)
	out := make([]int, sim.LogPartitions)
	if resp.ErrorCode == kerr.GroupIDNotFound.Code {
		// kfake's answer before anyone joined or committed (Kafka's is
		// offset -1 for each partition).
		return out
	}
	require.NoError(k.t, kerr.ErrorForCode(resp.ErrorCode))
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			require.NoError(k.t, kerr.ErrorForCode(p.ErrorCode))
			out[p.Partition] = int(max(p.Offset, 0))
		}
	}
	return out
}

// fetch returns the record of partition part at offset off, if there is
// one yet.
func (k *kafkaSide) fetch(m *kmember, part int32, off int64) *kgo.Record {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID, req.MaxWaitMillis, req.MinBytes, req.MaxBytes = -1, 0, 0, 1<<20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = k.topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = part, off, 1<<20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(k.ctx, m.cl)
	require.NoError(k.t, err)
	require.NoError(k.t, kerr.ErrorForCode(resp.ErrorCode))
	fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Topic: k.topic, Partition: part}, &resp.Topics[0].Partitions[0], kgo.DefaultDecompressor(), nil)
	require.NoError(k.t, fp.Err)
	for _, r := range fp.Records {
		if r.Offset == off {
			return r
		}
	}
	return nil
}

// heads returns, for each partition member c owns, the record at its
// position; ok is false if c cannot take a copy now (not a member, busy,
// or the group is rebalancing).
func (k *kafkaSide) heads(c int) (recs []*kgo.Record, ok bool) {
	m := k.members[c]
	if !m.in || m.hold != nil || k.pending {
		return nil, false
	}
	committed := k.committed()
	for _, p := range m.assigned {
		off, ok := m.pos[p]
		if !ok {
			off = int64(committed[p])
		}
		if r := k.fetch(m, p, off); r != nil {
			recs = append(recs, r)
		}
	}
	return recs, true
}

// take is a poll of one record: of the heads of its partitions, the one
// produced first (its value is the order it was produced in).
func (k *kafkaSide) take(c int, lose bool) (part, off int, agg string, ok bool) {
	recs, _ := k.heads(c)
	if len(recs) == 0 {
		return 0, 0, "", false
	}
	seq := func(r *kgo.Record) int {
		n, err := strconv.Atoi(string(r.Value))
		require.NoError(k.t, err)
		return n
	}
	r := slices.MinFunc(recs, func(x, y *kgo.Record) int { return seq(x) - seq(y) })
	m := k.members[c]
	m.hold = &kcopy{part: r.Partition, off: r.Offset, gen: m.gen}
	m.pos[r.Partition] = r.Offset + 1
	if lose { // the consumer re-seeks to the committed offset
		m.pos[r.Partition] = min(int64(k.committed()[r.Partition]), r.Offset)
	}
	return int(r.Partition), int(r.Offset), string(r.Key), true
}

// commit sends c's OffsetCommit as c sees itself (its member ID and
// generation); it returns "" or the error kfake answers. kfake answers
// ILLEGAL_GENERATION where Kafka answers UNKNOWN_MEMBER_ID: to a
// member-less (Empty) group's commit of a generation (Kafka's
// ClassicGroup.validateOffsetCommit checks the member first); that answer
// is read as Kafka's.
func (k *kafkaSide) commit(c int, part int32, off int64) string {
	m := k.members[c]
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.MemberID, req.Generation = k.group, m.id, m.gen
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = k.topic
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = part, off
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(k.ctx, m.cl)
	require.NoError(k.t, err)
	code := resp.Topics[0].Partitions[0].ErrorCode
	if code == kerr.IllegalGeneration.Code && !slices.ContainsFunc(k.members, func(m *kmember) bool { return m.in }) {
		code = kerr.UnknownMemberID.Code
	}
	if code == 0 {
		return ""
	}
	return kerr.ErrorForCode(code).(*kerr.Error).Message
}

// leave takes c out of the group, as its session's expiry does: by a
// LeaveGroup naming its member ID (the coordinator removes a member the
// same way whichever way it goes; TestKafkaSessionExpiryIsALeave shows it).
func (k *kafkaSide) leave(c int) {
	m := k.members[c]
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Group = k.group
	lm := kmsg.NewLeaveGroupRequestMember()
	lm.MemberID = m.id
	req.Members = append(req.Members, lm)
	resp, err := req.RequestWith(k.ctx, k.c.admin)
	require.NoError(k.t, err)
	require.NoError(k.t, kerr.ErrorForCode(resp.ErrorCode))
	require.NoError(k.t, kerr.ErrorForCode(resp.Members[0].ErrorCode))
	m.in = false
	k.rebalancing()
}

func (k *kafkaSide) done(c int) {
	m := k.members[c]
	h := m.hold
	m.hold = nil
	if !h.acked && m.in && h.gen == m.gen && slices.Contains(m.assigned, h.part) {
		m.pos[h.part] = h.off // seek back to the copy
	}
}

func (k *kafkaSide) crash(c int) {
	m := k.members[c]
	m.hold = nil
	if m.in {
		k.leave(c)
	}
	m.id, m.gen, m.pos, m.assigned = "", 0, nil, nil
}

// pair runs the same operations on the model and on kfake and compares
// their outcomes; its trace is what both did.
type pair struct {
	t         tb
	model     *sim.LogModel
	kafka     *kafkaSide
	consumers int
	seq       int
	produced  [sim.LogPartitions]int
	trace     []string
}

func newPair(t tb, c *cluster, consumers int) *pair {
	p := &pair{t: t, model: sim.NewLogModel(consumers), kafka: c.side(t, consumers), consumers: consumers}
	p.kafka.trace = &p.trace
	return p
}

func (p *pair) close() { p.kafka.close() }

func (p *pair) log(format string, args ...any) string {
	s := fmt.Sprintf(format, args...)
	p.trace = append(p.trace, s)
	return s
}

func (p *pair) holding(c int) bool {
	_, _, ok := p.model.Holding(c)
	return ok
}

// enabled reports whether o can happen now, on both.
func (p *pair) enabled(o op) bool {
	m := p.model
	switch o.kind {
	case opProduce:
		return true
	case opJoin:
		return !m.Member(o.c) && !p.holding(o.c)
	case opTake, opTakeLost:
		return m.Member(o.c) && !p.holding(o.c)
	case opCommit, opCommitLost:
		return p.holding(o.c) && !m.Acked(o.c)
	case opCommitAt:
		// A member waiting in JoinGroup is in its poll: it commits nothing.
		return p.holding(o.c) || m.Member(o.c) && !p.kafka.pending
	case opDone, opCrash:
		return p.holding(o.c)
	case opExpel:
		return p.holding(o.c) && m.Member(o.c)
	}
	return false
}

// do runs o on both if it is enabled, and returns what happened.
func (p *pair) do(o op) string {
	if !p.enabled(o) {
		return ""
	}
	t, m, k := p.t, p.model, p.kafka
	var out string
	switch o.kind {
	case opProduce:
		mp, mo := m.Produce(o.agg)
		kp, ko := k.produce(o.agg, p.seq)
		p.seq++
		p.produced[mp]++
		require.Equal(t, [2]int{mp, mo}, [2]int{kp, ko}, "%s: where the message lands", o)
		out = p.log("%s -> %d/%d", o, mp, mo)
	case opJoin:
		m.Join(o.c)
		k.join(o.c)
		out = p.log("%s", o)
	case opTake, opTakeLost:
		lose := o.kind == opTakeLost
		require.False(t, k.pending)
		mCan := m.CanTake(o.c)
		recs, _ := k.heads(o.c)
		require.Equal(t, mCan, len(recs) > 0, "%s: whether there is a copy to take\n%s", o, strings.Join(p.trace, "\n"))
		if !mCan {
			return ""
		}
		mp, mo, ma, _ := m.Take(o.c, lose)
		kp, ko, ka, _ := k.take(o.c, lose)
		require.Equal(t, fmt.Sprintf("%d/%d %s", mp, mo, ma), fmt.Sprintf("%d/%d %s", kp, ko, ka), "%s: the copy taken\n%s", o, strings.Join(p.trace, "\n"))
		out = p.log("%s -> %d/%d %s", o, mp, mo, ma)
	case opCommitLost:
		m.CommitLost(o.c)
		k.members[o.c].hold.acked = true
		out = p.log("%s", o)
	case opCommit, opCommitAt:
		part, off := o.part, min(o.off, p.produced[o.part])
		var mr string
		if o.kind == opCommit {
			hp, ho, _ := m.Holding(o.c)
			part, off = hp, ho+1
			mr = m.Commit(o.c)
			k.members[o.c].hold.acked = true
		} else {
			mr = m.CommitAt(o.c, part, off)
		}
		kr := k.commit(o.c, int32(part), int64(off))
		require.Equal(t, mr, kr, "%s: the commit's answer\n%s", o, strings.Join(p.trace, "\n"))
		if mr == "" {
			mr = "accepted"
		}
		out = p.log("%s %d/%d -> %s", opNames[o.kind], part, off, mr)
	case opDone:
		m.Done(o.c)
		k.done(o.c)
		out = p.log("%s", o)
	case opCrash:
		m.Crash(o.c)
		k.crash(o.c)
		out = p.log("%s", o)
	case opExpel:
		m.Expel(o.c)
		k.leave(o.c)
		out = p.log("%s", o)
	}
	p.compare(o)
	return out
}

// compare holds the state both show after o: the committed offsets, and,
// once kfake's rebalance is complete, the group's members and owners.
func (p *pair) compare(o op) {
	t, m, k := p.t, p.model, p.kafka
	require.Equal(t, m.Committed(), k.committed(), "after %s: the committed offsets\n%s", o, strings.Join(p.trace, "\n"))
	var members []int
	for c := range p.consumers {
		if m.Member(c) {
			members = append(members, c)
		}
		require.Equal(t, m.Member(c), k.members[c].in, "after %s: whether c%d is a member", o, c)
	}
	if k.pending {
		return
	}
	require.Equal(t, members, k.group0, "after %s: the group's members, as kfake's JoinGroup names them", o)
	owners := m.Owners()
	if len(members) == 0 {
		require.Nil(t, k.owners)
		return
	}
	require.Equal(t, owners, k.owners, "after %s: the owners", o)
}

func (p *pair) run(ops ...op) []string {
	var out []string
	for _, o := range ops {
		if s := p.do(o); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func produce(aggs ...string) []op {
	var out []op
	for _, a := range aggs {
		out = append(out, op{kind: opProduce, agg: a})
	}
	return out
}

func do(kind opKind, c int) op { return op{kind: kind, c: c} }

func seq(parts ...any) []op {
	var out []op
	for _, p := range parts {
		switch p := p.(type) {
		case op:
			out = append(out, p)
		case []op:
			out = append(out, p...)
		}
	}
	return out
}

// Aggregates o1 and o2 go to partition 1, o3 to 0, p2 to 2 (sim.Partition).
// With two members, c0 owns partitions 0 and 2, c1 owns 1.

// TestKafkaConformanceScenarios runs a hand-built scenario for each rule of
// the log broker on the model and on kfake: both must do the same, and
// what they do is the rule.
func TestKafkaConformanceScenarios(t *testing.T) {
	cl := newCluster(t)
	for _, sc := range []struct {
		name      string
		consumers int
		ops       []op
		want      []string
	}{
		{"a partition is fetched in offset order", 1,
			seq(produce("o1", "o3", "o2"), do(opJoin, 0), do(opTake, 0), do(opCommit, 0), do(opDone, 0), do(opTake, 0), do(opCommit, 0), do(opDone, 0), do(opTake, 0), do(opCommit, 0), do(opDone, 0)),
			[]string{"produce o1 -> 1/0", "produce o3 -> 0/0", "produce o2 -> 1/1", "join c0",
				"take c0 -> 1/0 o1", "commit 1/1 -> accepted", "done c0",
				"take c0 -> 0/0 o3", "commit 0/1 -> accepted", "done c0",
				"take c0 -> 1/1 o2", "commit 1/2 -> accepted", "done c0"}},
		{"a nack seeks back to the copy", 1,
			seq(produce("o1", "o2"), do(opJoin, 0), do(opTake, 0), do(opDone, 0), do(opTake, 0), do(opCommit, 0), do(opDone, 0), do(opTake, 0)),
			[]string{"produce o1 -> 1/0", "produce o2 -> 1/1", "join c0",
				"take c0 -> 1/0 o1", "done c0", "take c0 -> 1/0 o1", "commit 1/1 -> accepted", "done c0", "take c0 -> 1/1 o2"}},
		{"a commit is a prefix: the next covers a lost one", 1,
			seq(produce("o1", "o2", "o1"), do(opJoin, 0), do(opTake, 0), do(opCommitLost, 0), do(opDone, 0), do(opTake, 0), do(opCommit, 0), do(opDone, 0),
				do(opTake, 0), do(opCrash, 0), do(opJoin, 0), do(opTake, 0)),
			[]string{"produce o1 -> 1/0", "produce o2 -> 1/1", "produce o1 -> 1/2", "join c0",
				"take c0 -> 1/0 o1", "commit-lost c0", "done c0", "take c0 -> 1/1 o2", "commit 1/2 -> accepted", "done c0",
				"take c0 -> 1/2 o1", "crash c0", "join c0", "take c0 -> 1/2 o1"}},
		{"a crashed member's partition restarts from the committed offset", 2,
			seq(produce("o3", "o3", "o3"), do(opJoin, 0), do(opJoin, 1),
				do(opTake, 0), do(opCommit, 0), do(opDone, 0), do(opTake, 0), do(opCrash, 0), do(opTake, 1), do(opCommit, 1), do(opDone, 1), do(opTake, 1)),
			[]string{"produce o3 -> 0/0", "produce o3 -> 0/1", "produce o3 -> 0/2", "join c0", "join c1",
				"take c0 -> 0/0 o3", "commit 0/1 -> accepted", "done c0", "take c0 -> 0/1 o3", "crash c0",
				"take c1 -> 0/1 o3", "commit 0/2 -> accepted", "done c1", "take c1 -> 0/2 o3"}},
		{"copies read past the committed offset are delivered again after a rebalance", 2,
			seq(produce("o3", "o3", "o3"), do(opJoin, 0), do(opTake, 0), do(opCommit, 0), do(opDone, 0),
				do(opTake, 0), do(opCommitLost, 0), do(opDone, 0), do(opTake, 0), do(opCommitLost, 0), do(opDone, 0),
				do(opJoin, 1), do(opTake, 0)),
			[]string{"produce o3 -> 0/0", "produce o3 -> 0/1", "produce o3 -> 0/2", "join c0",
				"take c0 -> 0/0 o3", "commit 0/1 -> accepted", "done c0",
				"take c0 -> 0/1 o3", "commit-lost c0", "done c0", "take c0 -> 0/2 o3", "commit-lost c0", "done c0",
				"join c1", "take c0 -> 0/1 o3"}},
		{"a zombie's commit is rejected and the new owner reads the copy again", 2,
			seq(produce("o3"), do(opJoin, 0), do(opJoin, 1), do(opTake, 0), do(opExpel, 0), do(opTake, 1), do(opCommit, 1), do(opDone, 1), do(opCommit, 0), do(opDone, 0)),
			[]string{"produce o3 -> 0/0", "join c0", "join c1", "take c0 -> 0/0 o3", "expel c0",
				"take c1 -> 0/0 o3", "commit 0/1 -> accepted", "done c1", "commit 0/1 -> UNKNOWN_MEMBER_ID", "done c0"}},
		{"the last member's zombie commit is rejected too", 1,
			seq(produce("o3"), do(opJoin, 0), do(opTake, 0), do(opExpel, 0), do(opCommit, 0), do(opDone, 0), do(opJoin, 0), do(opTake, 0)),
			[]string{"produce o3 -> 0/0", "join c0", "take c0 -> 0/0 o3", "expel c0", "commit 0/1 -> UNKNOWN_MEMBER_ID", "done c0", "join c0", "take c0 -> 0/0 o3"}},
		{"a member that rejoins while it works: the new owner reads its copy, and its commit is accepted", 2,
			seq(produce("o3", "o3"), do(opJoin, 1), do(opTake, 1), do(opJoin, 0),
				do(opTake, 0), do(opCommit, 0), do(opDone, 0), do(opTake, 0), do(opCommit, 0), do(opDone, 0),
				do(opCommit, 1), do(opDone, 1), produce("o3"), do(opTake, 0), do(opCrash, 0), do(opTake, 1)),
			[]string{"produce o3 -> 0/0", "produce o3 -> 0/1", "join c1", "take c1 -> 0/0 o3", "join c0",
				"take c0 -> 0/0 o3", "commit 0/1 -> accepted", "done c0", "take c0 -> 0/1 o3", "commit 0/2 -> accepted", "done c0",
				"commit 0/1 -> accepted", "done c1", "produce o3 -> 0/2", "take c0 -> 0/2 o3", "crash c0", "take c1 -> 0/1 o3"}},
		{"a commit of a lower offset moves the committed offset back", 1,
			seq(produce("o3", "o3", "o3"), do(opJoin, 0), do(opTake, 0), op{kind: opCommitAt, c: 0, part: 0, off: 3}, op{kind: opCommitAt, c: 0, part: 0, off: 1},
				do(opCrash, 0), do(opJoin, 0), do(opTake, 0)),
			[]string{"produce o3 -> 0/0", "produce o3 -> 0/1", "produce o3 -> 0/2", "join c0", "take c0 -> 0/0 o3",
				"commit-at 0/3 -> accepted", "commit-at 0/1 -> accepted", "crash c0", "join c0", "take c0 -> 0/1 o3"}},
		{"a lost fetch position rereads from the committed offset", 1,
			seq(produce("o3", "o3", "o3"), do(opJoin, 0), do(opTake, 0), do(opCommitLost, 0), do(opDone, 0),
				do(opTakeLost, 0), do(opCommit, 0), do(opDone, 0), do(opTake, 0), do(opCommit, 0), do(opDone, 0), do(opTake, 0)),
			[]string{"produce o3 -> 0/0", "produce o3 -> 0/1", "produce o3 -> 0/2", "join c0", "take c0 -> 0/0 o3", "commit-lost c0", "done c0",
				"take-lost c0 -> 0/1 o3", "commit 0/2 -> accepted", "done c0", "take c0 -> 0/0 o3", "commit 0/1 -> accepted", "done c0", "take c0 -> 0/1 o3"}},
	} {
		t.Run(sc.name, func(t *testing.T) {
			p := newPair(t, cl, sc.consumers)
			defer p.close()
			require.Equal(t, sc.want, p.run(sc.ops...))
		})
	}
}

// TestKafkaConformanceProperty: on every generated sequence of operations
// the model and kfake agree (pair.do compares each outcome).
func TestKafkaConformanceProperty(t *testing.T) {
	cl := newCluster(t)
	aggs := []string{"o1", "o2", "o3", "p2", "a", "b"}
	rapid.Check(t, func(rt *rapid.T) {
		consumers := rapid.IntRange(1, maxConsumers).Draw(rt, "consumers")
		p := newPair(rt, cl, consumers)
		defer p.close()
		n := rapid.IntRange(1, 40).Draw(rt, "ops")
		for range n {
			// An operation that can happen now: produces and takes twice
			// as often as the others.
			var can []op
			for kind := opProduce; kind <= opExpel; kind++ {
				for c := range consumers {
					if o := (op{kind: kind, c: c}); p.enabled(o) {
						can = append(can, o)
						if kind == opTake || kind == opProduce && c == 0 {
							can = append(can, o)
						}
					}
					if kind == opProduce {
						break
					}
				}
			}
			o := rapid.SampledFrom(can).Draw(rt, "op")
			switch o.kind {
			case opProduce:
				o.agg = rapid.SampledFrom(aggs).Draw(rt, "aggregate")
			case opCommitAt:
				o.part = rapid.IntRange(0, sim.LogPartitions-1).Draw(rt, "partition")
				o.off = rapid.IntRange(0, 4).Draw(rt, "offset")
			}
			p.do(o)
		}
	})
}

// TestKafkaSessionExpiryIsALeave: a member whose session expires while it
// works is removed as a LeaveGroup removes it (how kafkaSide expels): the
// other member then reads the partition from the committed offset, and the
// zombie's commit is rejected with UNKNOWN_MEMBER_ID.
func TestKafkaSessionExpiryIsALeave(t *testing.T) {
	cl := newCluster(t)
	p := newPair(t, cl, 2)
	defer p.close()
	require.Equal(t, []string{"produce o3 -> 0/0", "join c0", "join c1", "take c0 -> 0/0 o3"},
		p.run(seq(produce("o3"), do(opJoin, 0), do(opJoin, 1), do(opTake, 0))...))
	k := p.kafka
	zombie := k.members[0]
	// c0 joins again with a short session and stops heartbeating: kfake
	// expires it. (It rejoins first, as the member it is.)
	short := k.joinRequest(zombie)
	short.SessionTimeoutMillis = 1000
	k.pending = true
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	go func() {
		resp, err := short.RequestWith(k.ctx, zombie.cl)
		if err != nil {
			resp = kmsg.NewPtrJoinGroupResponse()
			resp.ErrorCode = -1
		}
		ch <- resp
	}()
	rebalancing := func() bool {
		hb := kmsg.NewPtrHeartbeatRequest()
		hb.Group, hb.MemberID, hb.Generation = k.group, k.members[1].id, k.members[1].gen
		resp, err := hb.RequestWith(k.ctx, k.members[1].cl)
		return err == nil && resp.ErrorCode == kerr.RebalanceInProgress.Code
	}
	require.Eventually(t, rebalancing, conformanceTimeout, time.Millisecond)
	zombie.join = ch
	k.rejoin(k.members[1])
	k.settle()
	require.False(t, k.pending)
	// The model's expel, then kfake's expiry.
	p.model.Expel(0)
	require.Eventually(t, rebalancing, conformanceTimeout, 10*time.Millisecond, "c0's session did not expire")
	zombie.in = false
	k.rebalancing()
	require.Equal(t, []int{1}, k.group0)
	p.trace = append(p.trace, "c0's session expires")
	require.Equal(t, []string{"take c1 -> 0/0 o3", "commit 0/1 -> accepted", "done c1", "commit 0/1 -> UNKNOWN_MEMBER_ID"},
		p.run(do(opTake, 1), do(opCommit, 1), do(opDone, 1), do(opCommit, 0)))
}

// TestKfakeAnswersAnEmptyGroupsZombieWithIllegalGeneration pins the one
// answer where kfake and Kafka differ on a commit the model makes: a
// zombie whose group has no member left. Kafka answers UNKNOWN_MEMBER_ID
// (ClassicGroup.validateOffsetCommit checks the member before the
// generation); kfake, ILLEGAL_GENERATION. kafkaSide.commit reads it as
// Kafka's; if kfake changes, this test says so.
func TestKfakeAnswersAnEmptyGroupsZombieWithIllegalGeneration(t *testing.T) {
	cl := newCluster(t)
	p := newPair(t, cl, 1)
	defer p.close()
	p.run(seq(produce("o3"), do(opJoin, 0), do(opTake, 0), do(opExpel, 0))...)
	k := p.kafka
	m := k.members[0]
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.MemberID, req.Generation = k.group, m.id, m.gen
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = k.topic
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = 0, 1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(k.ctx, m.cl)
	require.NoError(t, err)
	require.True(t, errors.Is(kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode), kerr.IllegalGeneration))
}

// TestKafkaDefaultPartitionerKeepsAnAggregateInOnePartition: the model puts
// an aggregate in partition FNV-1a(aggregate) mod 3, Kafka's default
// partitioner in murmur2(key) mod 3. The partitions differ, but what the
// model relies on holds for both: an aggregate's messages all go to one
// partition, in the order they were produced.
func TestKafkaDefaultPartitionerKeepsAnAggregateInOnePartition(t *testing.T) {
	cl := newCluster(t)
	k := cl.side(t, 0)
	producer, err := kgo.NewClient(kgo.SeedBrokers(cl.fake.ListenAddrs()...), kgo.DefaultProduceTopic(k.topic))
	require.NoError(t, err)
	defer producer.Close()
	aggs := []string{"o1", "o2", "o3", "p2", "a", "b", "c", "d"}
	where := map[string]int32{}
	last := map[int32]int64{}
	differ := 0
	for round := range 4 {
		for _, a := range aggs {
			r, err := producer.ProduceSync(context.Background(), &kgo.Record{Key: []byte(a), Value: []byte(strconv.Itoa(round))}).First()
			require.NoError(t, err)
			if p, ok := where[a]; ok {
				require.Equal(t, p, r.Partition, "aggregate %s moved", a)
			}
			where[a] = r.Partition
			require.Greater(t, r.Offset, last[r.Partition]-1)
			last[r.Partition] = r.Offset + 1
			if round == 0 && int(r.Partition) != sim.Partition(a) {
				differ++
			}
		}
	}
	t.Logf("murmur2 places %d of %d aggregates elsewhere than the model's FNV-1a: %v", differ, len(aggs), where)
}
