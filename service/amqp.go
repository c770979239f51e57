package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oncecheck/oncecheck/model"
)

// DefaultAMQPURL is the RabbitMQ server a runner uses when its
// Config.BrokerURL is empty.
const DefaultAMQPURL = "amqp://guest:guest@127.0.0.1:5672/"

// The names of the contract on RabbitMQ, each followed by a suffix of the
// runner's own (".3f9a0c1b2d4e"), so that runners sharing a server do not
// meet: oncecheck sends the workload to the queue AMQPInQueue through the
// default exchange, the service publishes its outputs to the topic
// exchange AMQPOutExchange with the output's type as routing key, and the
// queue AMQPOutExchange+".capture" keeps them. The process finds the
// names in AMQP_QUEUE and AMQP_EXCHANGE.
const (
	AMQPInQueue     = "oncecheck.in"
	AMQPOutExchange = "oncecheck.out"
)

// AMQPConsumerTimeout is the consumer timeout the proxy of a RabbitMQ run
// enforces, as the server's consumer_timeout does (whose default, 30
// minutes, is too long to wait out in a run): a channel holding a
// delivery of the input unacknowledged for longer is closed with
// PRECONDITION_FAILED and its deliveries go back to the queue.
const AMQPConsumerTimeout = 2 * time.Second

// amqpBroker is a RabbitMQ server (external: service mode cannot embed
// one), oncecheck's own connection to it, and the live connections of
// the runner's proxies.
type amqpBroker struct {
	url             *url.URL
	upstream        string
	queue, exchange string
	conn            *amqp.Connection

	mu    sync.Mutex
	ch    *amqp.Channel
	conns map[int]*amqpConn // by connection number
	next  int
}

// startAMQP connects to the server of rawURL (DefaultAMQPURL when empty).
func startAMQP(rawURL string) (*amqpBroker, error) {
	if rawURL == "" {
		rawURL = DefaultAMQPURL
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "amqp" {
		return nil, fmt.Errorf("amqp: the server %q is not an amqp:// URL", rawURL)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "5672")
	}
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	s := "." + hex.EncodeToString(suffix[:])
	b := &amqpBroker{url: u, upstream: host, queue: AMQPInQueue + s, exchange: AMQPOutExchange + s, conns: map[int]*amqpConn{}}
	conn, err := amqp.DialConfig(rawURL, amqp.Config{Properties: amqp.Table{"connection_name": "oncecheck"}})
	if err != nil {
		return nil, fmt.Errorf("amqp: connect to %s: %w", host, err)
	}
	b.conn = conn
	return b, nil
}

// channel returns oncecheck's channel, opening a new one when the server
// closed the last (a passive declare of a missing queue does).
func (b *amqpBroker) channel() (*amqp.Channel, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil && !b.ch.IsClosed() {
		return b.ch, nil
	}
	ch, err := b.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("amqp: open a channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("amqp: confirm mode: %w", err)
	}
	b.ch = ch
	return ch, nil
}

// reset deletes the input queue, the output exchange and its capture
// queue, with their messages and consumers, and declares them again.
func (b *amqpBroker) reset(context.Context) error {
	ch, err := b.channel()
	if err != nil {
		return err
	}
	if err := b.remove(ch); err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(b.queue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("amqp: declare queue %s: %w", b.queue, err)
	}
	if err := ch.ExchangeDeclare(b.exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("amqp: declare exchange %s: %w", b.exchange, err)
	}
	capture := b.exchange + ".capture"
	if _, err := ch.QueueDeclare(capture, true, false, false, false, nil); err != nil {
		return fmt.Errorf("amqp: declare queue %s: %w", capture, err)
	}
	if err := ch.QueueBind(capture, "#", b.exchange, false, nil); err != nil {
		return fmt.Errorf("amqp: bind %s to %s: %w", capture, b.exchange, err)
	}
	return nil
}

// remove deletes the runner's queues and exchange.
func (b *amqpBroker) remove(ch *amqp.Channel) error {
	for _, q := range []string{b.queue, b.exchange + ".capture"} {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			return fmt.Errorf("amqp: delete queue %s: %w", q, err)
		}
	}
	if err := ch.ExchangeDelete(b.exchange, false, false); err != nil {
		return fmt.Errorf("amqp: delete exchange %s: %w", b.exchange, err)
	}
	return nil
}

// send publishes a workload copy to the input queue and waits for the
// server's confirmation. The copy is transient: no fault restarts the
// server, and a persistent message is confirmed only once it is on disk,
// which made the sends most of a run's setup.
func (b *amqpBroker) send(ctx context.Context, m model.Message, ordered bool) error {
	ch, err := b.channel()
	if err != nil {
		return err
	}
	h := amqp.Table{HeaderKey: m.Key, HeaderAggregate: m.Aggregate, HeaderType: m.Type}
	if ordered {
		h[HeaderPosition] = strconv.FormatInt(m.Position, 10)
	}
	c, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", b.queue, true, false, amqp.Publishing{
		MessageId: m.ID, Type: m.Type, Headers: h, ContentType: "application/json",
		DeliveryMode: amqp.Transient, Body: m.Payload,
	})
	if err != nil {
		return fmt.Errorf("amqp: publish %s: %w", m.ID, err)
	}
	ok, err := c.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("amqp: publish %s: %w", m.ID, err)
	}
	if !ok {
		return fmt.Errorf("amqp: publish %s: the server refused it (basic.nack)", m.ID)
	}
	return nil
}

// inputs reads the consumers and ready messages of the input queue from
// a passive declare; the unacknowledged deliveries are the ones the
// proxies saw and no ack, reject or channel end has settled yet (the
// server tells them only through its management plugin).
func (b *amqpBroker) inputs(context.Context) (inputs, error) {
	ch, err := b.channel()
	if err != nil {
		return inputs{}, err
	}
	q, err := ch.QueueDeclarePassive(b.queue, true, false, false, false, nil)
	if err != nil {
		return inputs{}, fmt.Errorf("amqp: queue %s: %w", b.queue, err)
	}
	in := inputs{consumers: q.Consumers, pending: q.Messages, ackWait: AMQPConsumerTimeout}
	b.mu.Lock()
	conns := make([]*amqpConn, 0, len(b.conns))
	for _, c := range b.conns {
		conns = append(conns, c)
	}
	b.mu.Unlock()
	for _, c := range conns {
		in.ackPending += c.unacked()
	}
	return in, nil
}

// requeue rejects the deliveries, with requeue, on the channels that got
// them, where those are still open: the server puts them back at once,
// marked redelivered. A delivery whose connection is gone was put back by
// the server as the connection closed. It reports whether it rejected
// any.
func (b *amqpBroker) requeue(tokens []string) bool {
	sent := false
	for _, t := range tokens {
		var id int
		var ch uint16
		var tag uint64
		if _, err := fmt.Sscanf(t, "amqp/%d/%d/%d", &id, &ch, &tag); err != nil {
			continue
		}
		b.mu.Lock()
		c := b.conns[id]
		b.mu.Unlock()
		if c != nil && c.reject(ch, tag) {
			sent = true
		}
	}
	return sent
}

// proxy starts an AMQP proxy in front of the server.
func (b *amqpBroker) proxy(index int, gen func() int, h hooks) (brokerProxy, error) {
	return newAMQPProxy(b, index, gen, h)
}

// register numbers a proxied connection and keeps it until it ends.
func (b *amqpBroker) register(c *amqpConn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next++
	c.id = b.next
	b.conns[c.id] = c
}

func (b *amqpBroker) unregister(c *amqpConn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.conns, c.id)
}

func (b *amqpBroker) input() string { return b.queue }

// close deletes the runner's queues and exchange and disconnects.
func (b *amqpBroker) close() {
	if ch, err := b.channel(); err == nil {
		_ = b.remove(ch)
	}
	_ = b.conn.Close()
}
