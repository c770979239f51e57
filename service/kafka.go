package service

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/model"
)

// The topics of the Kafka contract (docs/service-mode-kafka.md): oncecheck
// produces the workload to KafkaInTopic, keyed by aggregate; the service
// produces its outputs to KafkaOutTopic.
const (
	KafkaInTopic  = "oncecheck-in"
	KafkaOutTopic = "oncecheck-out"
	// KafkaInPartitions is how many partitions the input topic has.
	KafkaInPartitions = 2
)

// The record headers of the Kafka contract: an input carries its id, key,
// type, aggregate (and position); an output its id, type and cause.
const (
	KafkaHeaderID = "Oncecheck-Id"
)

// kafkaDefaultSession is the ack wait assumed for a group whose members'
// JoinGroup the proxies did not see: franz-go's default session timeout
// (45 s) and rebalance timeout (60 s).
const kafkaDefaultSession = 105 * time.Second

// kafkaBroker is the Kafka cluster of a runner: franz-go's in-process
// kfake cluster, or the brokers $ONCECHECK_KAFKA names, and oncecheck's
// own client of it.
type kafkaBroker struct {
	fake  *kfake.Cluster // nil for an external cluster
	seeds []string
	cl    *kgo.Client
	adm   *kadm.Client

	mu      sync.Mutex
	session time.Duration          // the longest session plus rebalance timeout the proxies saw
	members map[string]kafkaMember // delivery token -> the member it went to
	counts  map[string]int         // "partition/offset" -> deliveries so far
}

// kafkaMember is a consumer group member, as a proxy saw it join.
type kafkaMember struct {
	group, id string
	instance  *string
}

// startKafka starts an in-process kfake cluster, or connects to the
// brokers of urls (comma-separated host:port) when it is not empty.
func startKafka(urls string) (*kafkaBroker, error) {
	b := &kafkaBroker{members: map[string]kafkaMember{}, counts: map[string]int{}}
	if urls == "" {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100*time.Millisecond))
		if err != nil {
			return nil, fmt.Errorf("kafka: in-process cluster: %w", err)
		}
		b.fake, b.seeds = c, c.ListenAddrs()
	} else {
		for _, u := range strings.Split(urls, ",") {
			u = strings.TrimPrefix(strings.TrimSpace(u), "kafka://")
			if u != "" {
				b.seeds = append(b.seeds, u)
			}
		}
		if len(b.seeds) == 0 {
			return nil, fmt.Errorf("kafka: no broker in %q", urls)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.seeds...), kgo.ClientID("oncecheck"),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerLinger(0))
	if err != nil {
		b.close()
		return nil, fmt.Errorf("kafka: client of %s: %w", strings.Join(b.seeds, ","), err)
	}
	b.cl, b.adm = cl, kadm.NewClient(cl)
	return b, nil
}

// reset removes every consumer group (their members first: the killed
// processes of the last run are still members until their sessions end),
// deletes the contract's topics and creates them again, empty.
func (b *kafkaBroker) reset(ctx context.Context) error {
	b.mu.Lock()
	b.members, b.counts = map[string]kafkaMember{}, map[string]int{}
	b.mu.Unlock()
	groups, err := b.adm.ListGroups(ctx)
	if err != nil {
		return fmt.Errorf("kafka: list groups: %w", err)
	}
	if names := groups.Groups(); len(names) > 0 {
		described, err := b.adm.DescribeGroups(ctx, names...)
		if err != nil {
			return fmt.Errorf("kafka: describe groups: %w", err)
		}
		for _, g := range described.Sorted() {
			var ms []kafkaMember
			for _, m := range g.Members {
				ms = append(ms, kafkaMember{group: g.Group, id: m.MemberID, instance: m.InstanceID})
			}
			if err := b.leave(ctx, ms); err != nil {
				return err
			}
		}
		if _, err := b.adm.DeleteGroups(ctx, names...); err != nil {
			return fmt.Errorf("kafka: delete groups: %w", err)
		}
	}
	if _, err := b.adm.DeleteTopics(ctx, KafkaInTopic, KafkaOutTopic); err != nil {
		return fmt.Errorf("kafka: delete topics: %w", err)
	}
	for _, t := range []struct {
		name       string
		partitions int32
	}{{KafkaInTopic, KafkaInPartitions}, {KafkaOutTopic, 1}} {
		for try := 0; ; try++ {
			r, err := b.adm.CreateTopic(ctx, t.partitions, 1, nil, t.name)
			if err == nil {
				err = r.Err
			}
			if err == nil {
				break
			}
			// A deleted topic takes a moment to go on a real cluster.
			if !errors.Is(err, kerr.TopicAlreadyExists) || try >= 50 {
				return fmt.Errorf("kafka: create topic %s: %w", t.name, err)
			}
			if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
				return err
			}
		}
	}
	b.cl.PurgeTopicsFromClient(KafkaInTopic, KafkaOutTopic)
	return nil
}

// leave asks the group coordinator to remove members, on their behalf
// (LeaveGroup v3+, KIP-345): what their session timeout would do later.
func (b *kafkaBroker) leave(ctx context.Context, ms []kafkaMember) error {
	byGroup := map[string][]kmsg.LeaveGroupRequestMember{}
	var order []string
	for _, m := range ms {
		if _, ok := byGroup[m.group]; !ok {
			order = append(order, m.group)
		}
		lm := kmsg.NewLeaveGroupRequestMember()
		lm.MemberID, lm.InstanceID = m.id, m.instance
		reason := "oncecheck: the process was killed or lost its commit"
		lm.Reason = &reason
		byGroup[m.group] = append(byGroup[m.group], lm)
	}
	for _, g := range order {
		req := kmsg.NewPtrLeaveGroupRequest()
		req.Group, req.Members = g, byGroup[g]
		if _, err := req.RequestWith(ctx, b.cl); err != nil {
			return fmt.Errorf("kafka: leave group %s on behalf of its members: %w", g, err)
		}
	}
	return nil
}

// inputs reads how far the groups of the input topic are: the committed
// offsets of every group against the topic's high watermarks, the groups'
// members, and the session and rebalance timeouts the proxies saw (the
// ack wait).
func (b *kafkaBroker) inputs(ctx context.Context) (inputs, error) {
	var in inputs
	b.mu.Lock()
	in.ackWait = b.session
	b.mu.Unlock()
	if in.ackWait <= 0 {
		in.ackWait = kafkaDefaultSession
	}
	ends, err := b.adm.ListEndOffsets(ctx, KafkaInTopic)
	if err != nil {
		return in, fmt.Errorf("kafka: end offsets of %s: %w", KafkaInTopic, err)
	}
	groups, err := b.adm.ListGroups(ctx)
	if err != nil {
		return in, fmt.Errorf("kafka: list groups: %w", err)
	}
	names := groups.Groups()
	if len(names) == 0 {
		return in, nil
	}
	described, err := b.adm.DescribeGroups(ctx, names...)
	if err != nil {
		return in, fmt.Errorf("kafka: describe groups: %w", err)
	}
	var behind []string
	for _, g := range described.Sorted() {
		in.consumers += len(g.Members)
		offsets, err := b.adm.FetchOffsets(ctx, g.Group)
		if err != nil {
			return in, fmt.Errorf("kafka: offsets of group %s: %w", g.Group, err)
		}
		seen := 0
		var parts []string
		for _, p := range slices.Sorted(maps.Keys(ends[KafkaInTopic])) {
			e := ends[KafkaInTopic][p]
			seen++
			if e.Err != nil { // not known: not drained
				in.pending++
				parts = append(parts, fmt.Sprintf("partition %d: end not known (%v)", e.Partition, e.Err))
				continue
			}
			committed := int64(0)
			if o, ok := offsets.Lookup(KafkaInTopic, e.Partition); ok && o.Err == nil && o.At >= 0 {
				committed = o.At
			}
			if e.Offset > committed {
				in.pending += int(e.Offset - committed)
				parts = append(parts, fmt.Sprintf("partition %d committed to offset %d of %d", e.Partition, committed, e.Offset))
			}
		}
		if seen < KafkaInPartitions { // a partition not listed is not drained
			in.pending += KafkaInPartitions - seen
			parts = append(parts, fmt.Sprintf("%d partitions without an end offset", KafkaInPartitions-seen))
		}
		if len(parts) > 0 {
			behind = append(behind, fmt.Sprintf("group %s (%s): %s", g.Group, kafkaCount(len(g.Members), "member"), strings.Join(parts, ", ")))
		}
	}
	if len(behind) > 0 {
		// A Kafka record is pending until its group's committed offset
		// passes it, whether a member was handed it or not.
		in.stuck = fmt.Sprintf("%d pending in %s (records that no commit of their group covers, or partitions whose end offset is not known): %s", in.pending, KafkaInTopic, strings.Join(behind, "; "))
	}
	return in, nil
}

// kafkaCount is n and a noun, plural unless n is 1.
func kafkaCount(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// send produces a workload copy to the input topic, keyed by its
// aggregate, one record per batch, uncompressed.
func (b *kafkaBroker) send(ctx context.Context, m model.Message, ordered bool) error {
	r := &kgo.Record{Topic: KafkaInTopic, Key: []byte(m.Aggregate), Value: m.Payload, Headers: []kgo.RecordHeader{
		{Key: KafkaHeaderID, Value: []byte(m.ID)},
		{Key: HeaderKey, Value: []byte(m.Key)},
		{Key: HeaderType, Value: []byte(m.Type)},
		{Key: HeaderAggregate, Value: []byte(m.Aggregate)},
	}}
	if ordered {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderPosition, Value: []byte(strconv.FormatInt(m.Position, 10))})
	}
	if err := b.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return fmt.Errorf("kafka: produce %s: %w", m.ID, err)
	}
	return nil
}

// requeue removes the members the deliveries of tokens went to from their
// groups, as their session timeout would: the group rebalances and the
// partitions start again from their committed offsets.
func (b *kafkaBroker) requeue(tokens []string) bool {
	b.mu.Lock()
	var ms []kafkaMember
	seen := map[kafkaMember]bool{}
	for _, t := range tokens {
		m, ok := b.members[t]
		if ok && m.instance == nil && !seen[m] {
			seen[m] = true
			ms = append(ms, m)
		}
	}
	b.mu.Unlock()
	if len(ms) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return b.leave(ctx, ms) == nil
}

// delivered numbers a delivery of a record of the input and names its
// token, remembering the member it went to (for requeue).
func (b *kafkaBroker) delivered(partition int32, offset int64, m kafkaMember) (token string, count int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	at := fmt.Sprintf("%d/%d", partition, offset)
	b.counts[at]++
	count = b.counts[at]
	token = fmt.Sprintf("%s/%s#%d", KafkaInTopic, at, count)
	if m.id != "" {
		b.members[token] = m
	}
	return token, count
}

// joined records the timeouts of a member joining a group: a member that
// stands still is removed after its session timeout, and the group's
// rebalance then takes up to the rebalance timeout before another member
// owns its partitions: their sum is the ack wait on Kafka.
func (b *kafkaBroker) joined(session, rebalance time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.session = max(b.session, session+rebalance)
}

// proxy starts a Kafka protocol proxy in front of the cluster.
func (b *kafkaBroker) proxy(index int, gen func() int, h hooks) (brokerProxy, error) {
	return newKafkaProxy(b, b.seeds[0], index, gen, h)
}

func (b *kafkaBroker) input() string { return KafkaInTopic }

func (b *kafkaBroker) close() {
	if b.cl != nil {
		b.cl.Close()
	}
	if b.fake != nil {
		b.fake.Close()
	}
}

// KafkaKinds are the fault kinds service mode injects on Kafka: all of
// NATS's but a broker restart (docs/service-mode-kafka.md says how each is
// made on Kafka).
var KafkaKinds = []faults.Kind{faults.Crash, faults.Redelivery, faults.Reorder, faults.PublishFailure, faults.Reissue, faults.Concurrent, faults.Late, faults.CutConnection}
