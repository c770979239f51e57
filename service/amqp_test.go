package service

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/internal/amqptest"
	"github.com/oncecheck/oncecheck/model"
)

// shortstr and longstr encode AMQP strings, for the frames of the tests.
func shortstr(s string) []byte { return append([]byte{byte(len(s))}, s...) }
func longstr(b []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
}

func TestAMQPContentHeaderParses(t *testing.T) {
	var table []byte
	table = append(table, shortstr("flag")...)
	table = append(table, 't', 1)
	table = append(table, shortstr("n")...)
	table = append(table, 'l', 0, 0, 0, 0, 0, 0, 0, 7)
	table = append(table, shortstr("Oncecheck-Key")...)
	table = append(table, 'S')
	table = append(table, longstr([]byte("k1"))...)
	table = append(table, shortstr("list")...)
	table = append(table, 'A')
	table = append(table, longstr([]byte{'s', 0, 1})...)
	table = append(table, shortstr("Oncecheck-Aggregate")...)
	table = append(table, 'S')
	table = append(table, longstr([]byte("o1"))...)
	p := binary.BigEndian.AppendUint16(nil, 60)
	p = binary.BigEndian.AppendUint16(p, 0)
	p = binary.BigEndian.AppendUint64(p, 11)
	p = binary.BigEndian.AppendUint16(p, 1<<15|1<<13|1<<12|1<<7|1<<6|1<<5)
	p = append(p, shortstr("application/json")...)
	p = append(p, longstr(table)...)
	p = append(p, 2)
	p = append(p, shortstr("m1")...)
	p = binary.BigEndian.AppendUint64(p, 1700000000)
	p = append(p, shortstr("AddItem")...)
	frames := append(amqpFrameBytes(amqpHeader, 3, p), amqpFrameBytes(amqpBody, 3, []byte(`{"sku":"a"}`))...)
	r := bufio.NewReader(bytes.NewReader(frames))
	f, err := readAMQPFrame(r)
	require.NoError(t, err)
	require.Equal(t, byte(amqpHeader), f.typ)
	require.Equal(t, uint16(3), f.channel)
	props, err := parseAMQPHeader(f.payload)
	require.NoError(t, err)
	require.Equal(t, amqpProps{bodySize: 11, messageID: "m1", typ: "AddItem", headers: map[string]string{"Oncecheck-Key": "k1", "Oncecheck-Aggregate": "o1"}}, props)
	f, err = readAMQPFrame(r)
	require.NoError(t, err)
	require.Equal(t, `{"sku":"a"}`, string(f.payload))
	_, err = readAMQPFrame(r)
	require.Error(t, err)

	bad := amqpFrameBytes(amqpBody, 1, []byte("x"))
	bad[len(bad)-1] = 0
	_, err = readAMQPFrame(bufio.NewReader(bytes.NewReader(bad)))
	require.ErrorContains(t, err, "0xCE")
}

// recHooks records what an AMQP proxy reports, in front of a real
// server: the test's view of the run.
type recHooks struct {
	mu     sync.Mutex
	ds     []delivery
	acks   []string
	nacks  []string
	pubs   []output
	refuse bool
}

func (h *recHooks) alive(*proxyConn) bool { return true }
func (h *recHooks) delivered(_ *proxyConn, d delivery) verdict {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ds = append(h.ds, d)
	return verdict{}
}
func (h *recHooks) acked(_ *proxyConn, token string, nack bool, _ string) verdict {
	h.mu.Lock()
	defer h.mu.Unlock()
	if nack {
		h.nacks = append(h.nacks, token)
	} else {
		h.acks = append(h.acks, token)
	}
	return verdict{}
}
func (h *recHooks) published(_ *proxyConn, o output) verdict {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pubs = append(h.pubs, o)
	return verdict{refuse: h.refuse}
}

func (h *recHooks) snapshot() (ds []delivery, acked, nacked []string, pubs []output) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]delivery(nil), h.ds...), append([]string(nil), h.acks...), append([]string(nil), h.nacks...), append([]output(nil), h.pubs...)
}

// TestAMQPProxyOnRabbitMQ runs amqp091-go through the proxy against the
// server: prefetched deliveries, a multiple ack, confirmed publishes (one
// refused), the consumer timeout closing a channel and its copy coming
// back redelivered.
func TestAMQPProxyOnRabbitMQ(t *testing.T) {
	b, err := startAMQP(amqptest.URL(t))
	require.NoError(t, err)
	defer b.close()
	ctx := context.Background()
	require.NoError(t, b.reset(ctx))
	for _, id := range []string{"m1", "m2", "m3"} {
		require.NoError(t, b.send(ctx, model.Message{ID: id, Key: "k-" + id, Type: "AddItem", Aggregate: "o1", Payload: []byte(`{}`)}, false))
	}
	h := &recHooks{}
	p, err := b.proxy(0, func() int { return 1 }, h)
	require.NoError(t, err)
	defer p.close()
	env := map[string]string{}
	for _, kv := range p.env() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	require.Equal(t, b.queue, env["AMQP_QUEUE"])
	conn, err := amqp.Dial(env["AMQP_URL"])
	require.NoError(t, err)
	defer conn.Close()

	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.Qos(3, 0, false))
	ds, err := ch.Consume(b.queue, "", false, false, false, false, nil)
	require.NoError(t, err)
	var got []amqp.Delivery
	for range 3 {
		got = append(got, <-ds)
	}
	in, err := b.inputs(ctx)
	require.NoError(t, err)
	require.Equal(t, inputs{consumers: 1, pending: 0, ackPending: 3, ackWait: AMQPConsumerTimeout}, in)
	require.NoError(t, got[2].Ack(true)) // multiple: every earlier tag too
	require.Eventually(t, func() bool { _, acked, _, _ := h.snapshot(); return len(acked) == 3 }, 5*time.Second, 10*time.Millisecond)
	delivered, acked, _, _ := h.snapshot()
	for i, d := range delivered {
		require.Equal(t, got[i].MessageId, d.id)
		require.Equal(t, "1", d.count)
		require.Equal(t, d.token, acked[i], "the multiple ack names each delivery")
	}
	in, err = b.inputs(ctx)
	require.NoError(t, err)
	require.Zero(t, in.ackPending)

	pub, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, pub.Confirm(false))
	publish := func(id string) bool {
		c, err := pub.PublishWithDeferredConfirmWithContext(ctx, b.exchange, "ItemAdded", false, false, amqp.Publishing{
			MessageId: id, Headers: amqp.Table{HeaderCause: "k-m1"}, Body: []byte(`{"sku":"a"}`)})
		require.NoError(t, err)
		ok, err := c.WaitContext(ctx)
		require.NoError(t, err)
		return ok
	}
	require.True(t, publish("k-m1/0"))
	h.mu.Lock()
	h.refuse = true
	h.mu.Unlock()
	require.False(t, publish("k-m1/1"), "a refused publish is nacked")
	h.mu.Lock()
	h.refuse = false
	h.mu.Unlock()
	require.True(t, publish("k-m1/2"), "the confirmations after a refused publish keep the client's numbers")
	_, _, _, pubs := h.snapshot()
	require.Len(t, pubs, 3)
	require.Equal(t, output{id: "k-m1/0", typ: "ItemAdded", cause: "k-m1", body: []byte(`{"sku":"a"}`), confirmed: true}, pubs[0])
	q, err := b.ch.QueueDeclarePassive(b.exchange+".capture", true, false, false, false, nil)
	require.NoError(t, err)
	require.Equal(t, 2, q.Messages, "the refused publish never reached the server")

	// The consumer timeout: a delivery held past it closes its channel
	// with PRECONDITION_FAILED and goes back to the queue, redelivered.
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	require.NoError(t, b.send(ctx, model.Message{ID: "m4", Key: "k-m4", Type: "AddItem", Aggregate: "o1", Payload: []byte(`{}`)}, false))
	late := <-ds
	select {
	case e := <-closed:
		require.NotNil(t, e)
		require.Equal(t, amqp.PreconditionFailed, e.Code)
		require.Contains(t, e.Reason, "delivery acknowledgement on channel")
	case <-time.After(AMQPConsumerTimeout + 3*time.Second):
		t.Fatal("the consumer timeout did not close the channel")
	}
	require.ErrorIs(t, late.Ack(false), amqp.ErrClosed, "the client refuses an ack on the closed channel")
	ch2, err := conn.Channel()
	require.NoError(t, err)
	ds2, err := ch2.Consume(b.queue, "", false, false, false, false, nil)
	require.NoError(t, err)
	again := <-ds2
	require.Equal(t, "m4", again.MessageId)
	require.True(t, again.Redelivered)
	require.NoError(t, again.Ack(false))
	delivered, _, _, _ = h.snapshot()
	require.Equal(t, "2 or more (redelivered)", delivered[len(delivered)-1].count)
}

// TestRabbitMQSettlesAsDocumented checks on the server what
// docs/service-mode-amqp.md says of it: a closed channel's unacknowledged
// deliveries come back redelivered, and an ack of a delivery the channel
// no longer holds (a zombie's late ack) closes the channel with
// PRECONDITION_FAILED instead of being accepted.
func TestRabbitMQSettlesAsDocumented(t *testing.T) {
	b, err := startAMQP(amqptest.URL(t))
	require.NoError(t, err)
	defer b.close()
	ctx := context.Background()
	require.NoError(t, b.reset(ctx))
	require.NoError(t, b.send(ctx, model.Message{ID: "m1", Key: "k1", Type: "AddItem", Aggregate: "o1"}, false))
	conn, err := amqp.Dial(b.url.String())
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	ds, err := ch.Consume(b.queue, "", false, false, false, false, nil)
	require.NoError(t, err)
	d := <-ds
	require.False(t, d.Redelivered)
	require.NoError(t, ch.Close())

	ch, err = conn.Channel()
	require.NoError(t, err)
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	ds, err = ch.Consume(b.queue, "", false, false, false, false, nil)
	require.NoError(t, err)
	d = <-ds
	require.True(t, d.Redelivered)
	require.NoError(t, d.Reject(true)) // given back, as the proxy's ack-lost does
	d2 := <-ds
	require.NoError(t, d.Ack(false)) // the late ack of the first copy
	e := <-closed
	require.NotNil(t, e)
	require.Equal(t, amqp.PreconditionFailed, e.Code)
	require.Contains(t, e.Reason, "unknown delivery tag")
	require.True(t, errors.Is(d2.Ack(false), amqp.ErrClosed))
}
