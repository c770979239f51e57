package service

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/model"
)

// Brokers are the brokers service mode runs a service on.
var Brokers = []string{"nats", "kafka", "amqp", "redis", "postgres"}

// BrokerKinds are the fault kinds service mode injects on a broker (a
// slice of the caller's own).
func BrokerKinds(name string) ([]faults.Kind, error) {
	switch name {
	case "nats":
		return slices.Clone(Kinds), nil
	case "kafka":
		return slices.Clone(KafkaKinds), nil
	case "amqp", "redis": // no restart of a server oncecheck did not start
		return slices.DeleteFunc(slices.Clone(Kinds), func(k faults.Kind) bool { return k == faults.BrokerRestart }), nil
	case "postgres":
		return slices.Clone(PostgresKinds), nil
	}
	return nil, fmt.Errorf("service: unknown broker %q (these are: %s)", name, strings.Join(Brokers, ", "))
}

// openBroker starts the broker of cfg, or connects to it.
func openBroker(cfg Config) (broker, error) {
	switch cfg.Broker {
	case "nats":
		return startNATS(cfg.BrokerURL)
	case "kafka":
		return startKafka(cfg.BrokerURL)
	case "amqp":
		return startAMQP(cfg.BrokerURL)
	case "redis":
		return startRedis(cfg.BrokerURL)
	case "postgres":
		return startPostgres(cfg)
	}
	return nil, fmt.Errorf("service: unknown broker %q (these are: %s)", cfg.Broker, strings.Join(Brokers, ", "))
}

// broker is the message broker a service consumes its input from and
// publishes its outputs to, as service mode drives it: NATS JetStream in
// this version (nats.go), each broker behind a protocol proxy of its own
// that turns what it sees into the run's hooks (hooks.go).
type broker interface {
	// reset empties the input and output of the contract before a run,
	// with every consumer (group) of the input.
	reset(ctx context.Context) error
	// send publishes one workload copy to the input, with the contract's
	// id, key, type, aggregate and, when ordered, position.
	send(ctx context.Context, m model.Message, ordered bool) error
	// inputs says how far the consumers of the input are.
	inputs(ctx context.Context) (inputs, error)
	// requeue gives the copies of the deliveries named by their tokens
	// back to the broker on their consumer's behalf, as the broker does
	// itself once their ack wait or session ends; false when this broker
	// has no such request and the wait must run out.
	requeue(tokens []string) bool
	// proxy starts the proxy of consumer process index, in front of the
	// broker, judging what it carries with h.
	proxy(index int, gen func() int, h hooks) (brokerProxy, error)
	// input names the input, for reports ("ONCECHECK_IN").
	input() string
	close()
}

// releaser is a broker whose requeue can fail and give back fewer copies
// than asked (the PostgreSQL queue's release statement).
type releaser interface {
	// release gives back the copies of the tokens, as requeue does, and
	// returns how many it gave back.
	release(tokens []string) (int, error)
}

// requeueCount gives back the copies of the tokens and returns how many
// the broker took back.
func requeueCount(b broker, tokens []string) (int, error) {
	if r, ok := b.(releaser); ok {
		return r.release(tokens)
	}
	if b.requeue(tokens) {
		return len(tokens), nil
	}
	return 0, nil
}

// brokerProxy is the proxy of one consumer process in front of the
// broker.
type brokerProxy interface {
	// env is what the process finds in its environment to reach the
	// broker through the proxy (NATS_URL=...).
	env() []string
	// idle reports whether no publish of the process is in flight (sent
	// through the proxy, its confirmation not yet back).
	idle() bool
	close()
}

// inputs is how far the consumers of the input are: how many consumers
// (or group members) there are, how many copies are not yet delivered and
// not yet acknowledged, and the longest ack wait (or session timeout).
// stuck, when not empty, says what is pending in the broker's own terms,
// for a run that does not drain.
type inputs struct {
	consumers, pending, ackPending int
	ackWait                        time.Duration
	stuck                          string
}

// delivery is a copy of an input message reaching a process, as its
// broker proxy saw it.
type delivery struct {
	id    string // the message's id, from the contract's header
	count string // the broker's delivery count, recorded as is ("?": unknown)
	token string // what the process's ack of it names: unique in the run
}

// output is a message a process publishes on the contract's output.
type output struct {
	id, typ, cause string
	body           []byte
	// confirmed says the publisher waits for the broker's confirmation,
	// which a fault may then strike.
	confirmed bool
}

// hooks are what a broker proxy reports to the run (implemented by *run
// in hooks.go); each returns what the proxy does with the frame.
type hooks interface {
	// alive reports whether c's process is still the one that opened it.
	alive(c *proxyConn) bool
	delivered(c *proxyConn, d delivery) verdict
	acked(c *proxyConn, token string, nack bool, detail string) verdict
	published(c *proxyConn, o output) verdict
}

// verdict is what a proxy does with a frame: forward it or drop it, close
// the connection or not, then run after, if any.
type verdict struct {
	drop bool // the frame is not forwarded
	cut  bool // the connection is closed (its process is dead)
	// refuse (a publish only): the frame is not forwarded and the
	// publisher gets its protocol's error for a refused publish.
	refuse bool
	// atConfirm (a publish only): called as the broker's confirmation of
	// the publish comes back; refuse then turns it into an error.
	atConfirm func() verdict
	after     func()
}

// proxyConn is one client connection through a proxy.
type proxyConn struct {
	index int // the consumer process it belongs to
	gen   int // the generation of the process when it connected
}

// givenBack words the requeue event of a killed process's copies: given
// of its n unacknowledged ones went back to the broker.
func givenBack(given, n int, proc string) string {
	what := fmt.Sprintf("the %d unacknowledged copies", n)
	switch {
	case given < n:
		what = fmt.Sprintf("%d of the %d unacknowledged copies", given, n)
	case n == 1:
		what = "the unacknowledged copy"
	}
	s := fmt.Sprintf("oncecheck gave %s of the killed %s back to the broker, as the broker would after their ack wait", what, proc)
	if given < n {
		s += "; not the others: taken again since, or the release statement changed nothing"
	}
	return s
}
