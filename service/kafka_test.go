package service

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/oncecheck/oncecheck/model"
)

// recordingHooks keeps what a proxy reports, and refuses the publishes
// whose ids it is told to.
type recordingHooks struct {
	mu         sync.Mutex
	deliveries []delivery
	acks       []string
	nacks      []string
	publishes  []output
	refuse     map[string]bool
}

func (h *recordingHooks) alive(*proxyConn) bool { return true }

func (h *recordingHooks) delivered1(d delivery) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.deliveries = append(h.deliveries, d)
}

func (h *recordingHooks) snapshot() ([]delivery, []string, []output) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]delivery(nil), h.deliveries...), append([]string(nil), h.acks...), append([]output(nil), h.publishes...)
}

type hooksAdapter struct{ *recordingHooks }

func (h hooksAdapter) delivered(_ *proxyConn, d delivery) verdict {
	h.delivered1(d)
	return verdict{}
}

func (h hooksAdapter) acked(_ *proxyConn, token string, nack bool, _ string) verdict {
	h.mu.Lock()
	defer h.mu.Unlock()
	if nack {
		h.nacks = append(h.nacks, token)
	} else {
		h.acks = append(h.acks, token)
	}
	return verdict{}
}

func (h hooksAdapter) published(_ *proxyConn, o output) verdict {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.publishes = append(h.publishes, o)
	if h.refuse[o.id] {
		delete(h.refuse, o.id)
		return verdict{refuse: true}
	}
	return verdict{}
}

// TestKafkaProxySeesDeliveriesCommitsAndPublishes runs franz-go clients
// through the proxy in front of kfake: the records fetched are
// deliveries, a commit acks the deliveries below its offset, the records
// of a compressed multi-record produce are publishes, and a refused
// produce is retried by the client.
func TestKafkaProxySeesDeliveriesCommitsAndPublishes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := startKafka("")
	require.NoError(t, err)
	defer b.close()
	require.NoError(t, b.reset(ctx))
	for _, id := range []string{"m1", "m2", "m3"} {
		m := model.Message{ID: id, Key: "k" + id[1:], Type: "AddItem", Aggregate: "o1", Payload: []byte(`{"sku":"a","qty":1}`)}
		require.NoError(t, b.send(ctx, m, false))
	}
	h := hooksAdapter{&recordingHooks{refuse: map[string]bool{"out-2": true}}}
	px, err := b.proxy(0, func() int { return 1 }, h)
	require.NoError(t, err)
	defer px.close()
	addr := px.env()[0][len("KAFKA_BROKERS="):]

	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumerGroup("g"), kgo.ConsumeTopics(KafkaInTopic),
		kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.ProducerBatchCompression(kgo.GzipCompression()), kgo.ProducerLinger(50*time.Millisecond), kgo.MetadataMinAge(100*time.Millisecond))
	require.NoError(t, err)
	defer cl.Close()

	// Three records, one partition (one aggregate): each fetch carries
	// one; committing after the last acks all three.
	var got []*kgo.Record
	for len(got) < 3 {
		fs := cl.PollFetches(ctx)
		require.NoError(t, fs.Err0())
		got = append(got, fs.Records()...)
		if len(got) == 2 {
			require.NoError(t, cl.CommitRecords(ctx, got[0]))
		}
	}
	require.NoError(t, cl.CommitRecords(ctx, got[2]))
	ds, acked, _ := h.snapshot()
	require.Len(t, ds, 3)
	for i, d := range ds {
		require.Equal(t, []string{"m1", "m2", "m3"}[i], d.id)
		require.Equal(t, "1", d.count)
	}
	require.Equal(t, []string{ds[0].token, ds[1].token, ds[2].token}, acked)
	in, err := b.inputs(ctx)
	require.NoError(t, err)
	require.Equal(t, 0, in.pending)
	require.Equal(t, 1, in.consumers)

	// Three outputs produced at once, gzip-compressed in one batch; the
	// first produce of out-2's batch is refused and retried.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, id := range []string{"out-1", "out-2", "out-3"} {
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Topic: KafkaOutTopic, Value: []byte(`{"n":1}`), Headers: []kgo.RecordHeader{
			{Key: KafkaHeaderID, Value: []byte(id)}, {Key: HeaderType, Value: []byte("ItemAdded")}, {Key: HeaderCause, Value: []byte("k1")},
		}}, func(_ *kgo.Record, err error) { errs[i] = err; wg.Done() })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	_, _, pubs := h.snapshot()
	ids := map[string]int{}
	for _, o := range pubs {
		ids[o.id]++
		require.Equal(t, "ItemAdded", o.typ)
		require.Equal(t, "k1", o.cause)
		require.True(t, o.confirmed)
	}
	require.Equal(t, 2, ids["out-2"], "refused once, then retried: %v", ids)
	require.GreaterOrEqual(t, ids["out-1"], 1)
	require.GreaterOrEqual(t, ids["out-3"], 1)
	ends, err := b.adm.ListEndOffsets(ctx, KafkaOutTopic)
	require.NoError(t, err)
	end, ok := ends.Lookup(KafkaOutTopic, 0)
	require.True(t, ok)
	require.Equal(t, int64(3), end.Offset, "the refused batch was not stored, its retry was")
}

// TestKafkaRefusesAZombiesCommit: kfake, like Kafka, refuses the offset
// commit of a member that is no longer in the group.
func TestKafkaRefusesAZombiesCommit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := startKafka("")
	require.NoError(t, err)
	defer b.close()
	require.NoError(t, b.reset(ctx))
	require.NoError(t, b.send(ctx, model.Message{ID: "m1", Key: "k1", Type: "AddItem", Aggregate: "o1", Payload: []byte(`{}`)}, false))
	h := hooksAdapter{&recordingHooks{}}
	px, err := b.proxy(0, func() int { return 1 }, h)
	require.NoError(t, err)
	defer px.close()
	addr := px.env()[0][len("KAFKA_BROKERS="):]
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumerGroup("g"), kgo.ConsumeTopics(KafkaInTopic),
		kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	defer cl.Close()
	fs := cl.PollFetches(ctx)
	require.NoError(t, fs.Err0())
	require.Len(t, fs.Records(), 1)
	ds, _, _ := h.snapshot()
	require.Len(t, ds, 1)
	require.True(t, b.requeue([]string{ds[0].token}), "the member is removed on its behalf")
	err = cl.CommitRecords(ctx, fs.Records()[0])
	require.Error(t, err)
	require.True(t, errors.Is(err, kerr.UnknownMemberID) || errors.Is(err, kerr.IllegalGeneration), "%v", err)
}

// txnHooks records what a proxy reports of a transactional producer.
type txnHooks struct {
	hooksAdapter
	ended []string // the ids of the outputs of each committed EndTxn
	notes []string
}

func (h *txnHooks) txnProduce(_ *proxyConn, o output) (kafkaTxnOut, verdict) {
	return kafkaTxnOut{o: o}, verdict{}
}

func (h *txnHooks) txnEnding(*proxyConn, *kafkaTxnEnd) verdict { return verdict{} }

func (h *txnHooks) txnEnded(_ *proxyConn, e *kafkaTxnEnd, committed bool, detail string) verdict {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !committed {
		h.notes = append(h.notes, detail)
		return verdict{}
	}
	for _, o := range e.outs {
		h.ended = append(h.ended, o.o.id)
	}
	h.acks = append(h.acks, e.tokens...)
	return verdict{}
}

func (h *txnHooks) txnNote(_ *proxyConn, detail string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.notes = append(h.notes, detail)
}

// TestKafkaProxyCountsCommittedTransactions: through the proxy, a
// transactional producer's outputs count when its transaction commits,
// and with them the deliveries its TxnOffsetCommit covers; an aborted
// transaction's count for nothing and its deliveries are given back, and what the proxy counts is what a
// read_committed consumer of the output topic reads, on kfake.
func TestKafkaProxyCountsCommittedTransactions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := startKafka("")
	require.NoError(t, err)
	defer b.close()
	require.NoError(t, b.reset(ctx))
	for _, id := range []string{"m1", "m2"} {
		require.NoError(t, b.send(ctx, model.Message{ID: id, Key: "k" + id[1:], Type: "AddItem", Aggregate: "o1", Payload: []byte(`{}`)}, false))
	}
	h := &txnHooks{hooksAdapter: hooksAdapter{&recordingHooks{}}}
	px, err := b.proxy(0, func() int { return 1 }, h)
	require.NoError(t, err)
	defer px.close()
	addr := px.env()[0][len("KAFKA_BROKERS="):]
	sess, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(addr), kgo.ConsumerGroup("g"), kgo.ConsumeTopics(KafkaInTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.TransactionalID("t1"), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	require.NoError(t, err)
	defer sess.Close()
	out := func(id string) *kgo.Record {
		return &kgo.Record{Topic: KafkaOutTopic, Value: []byte(`{}`), Headers: []kgo.RecordHeader{
			{Key: KafkaHeaderID, Value: []byte(id)}, {Key: HeaderType, Value: []byte("ItemAdded")}, {Key: HeaderCause, Value: []byte("k1")}}}
	}
	// One record per poll (one batch per fetch): the first transaction
	// aborts, the second commits the same record's output again.
	fs := sess.PollFetches(ctx)
	require.NoError(t, fs.Err0())
	require.Len(t, fs.Records(), 1)
	require.NoError(t, sess.Begin())
	require.NoError(t, sess.ProduceSync(ctx, out("aborted-1")).FirstErr())
	committed, err := sess.End(ctx, kgo.TryAbort)
	require.NoError(t, err)
	require.False(t, committed)
	for range 2 {
		fs = sess.PollFetches(ctx)
		require.NoError(t, fs.Err0())
		require.Len(t, fs.Records(), 1)
		require.NoError(t, sess.Begin())
		require.NoError(t, sess.ProduceSync(ctx, out("out-"+string(fs.Records()[0].Headers[0].Value))).FirstErr())
		committed, err = sess.End(ctx, kgo.TryCommit)
		require.NoError(t, err)
		require.True(t, committed)
	}
	ds, acked, pubs := h.snapshot()
	require.Empty(t, pubs, "a transactional output is not an ordinary publish")
	// The abort gives back what the process had open (m1, and m2 if the
	// client had fetched it ahead); m1 comes again, and each commit acks
	// what its offsets cover.
	h.mu.Lock()
	nacked := slices.Clone(h.nacks)
	h.mu.Unlock()
	require.GreaterOrEqual(t, len(ds), 3, "m1 twice (its first transaction aborted), m2")
	require.Equal(t, ds[0].token, nacked[0], "the abort ends m1's first delivery")
	var tokens []string
	for _, d := range ds {
		tokens = append(tokens, d.token)
	}
	require.ElementsMatch(t, tokens, append(nacked, acked...), "every delivery ends: given back by the abort or acked by a commit")
	h.mu.Lock()
	ended := slices.Clone(h.ended)
	h.mu.Unlock()
	require.Equal(t, []string{"out-m1", "out-m2"}, ended)
	in, err := b.inputs(ctx)
	require.NoError(t, err)
	require.Equal(t, 0, in.pending)

	// A read_committed consumer of the output topic reads what the proxy
	// counted; a read_uncommitted one reads the aborted output too.
	for _, level := range []kgo.IsolationLevel{kgo.ReadCommitted(), kgo.ReadUncommitted()} {
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.seeds...), kgo.ConsumeTopics(KafkaOutTopic), kgo.FetchIsolationLevel(level),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		require.NoError(t, err)
		var ids []string
		want := 2
		if level == kgo.ReadUncommitted() {
			want = 3
		}
		for len(ids) < want {
			fs := cl.PollFetches(ctx)
			require.NoError(t, fs.Err0())
			for _, r := range fs.Records() {
				ids = append(ids, string(r.Headers[0].Value))
			}
		}
		cl.Close()
		if want == 2 {
			require.Equal(t, ended, ids)
		} else {
			require.Equal(t, []string{"aborted-1", "out-m1", "out-m2"}, ids)
		}
	}
}
