package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The streams of the contract: oncecheck publishes the workload to
// InStream, the service publishes its outputs to subjects OutStream
// captures.
const (
	InStream   = "ONCECHECK_IN"
	OutStream  = "ONCECHECK_OUT"
	InSubject  = "oncecheck.in."
	OutSubject = "oncecheck.out."
)

// The headers of an input message and of an output (docs/service-mode.md).
const (
	HeaderMsgID     = "Nats-Msg-Id"
	HeaderKey       = "Oncecheck-Key"
	HeaderType      = "Oncecheck-Type"
	HeaderAggregate = "Oncecheck-Aggregate"
	HeaderPosition  = "Oncecheck-Position"
	HeaderCause     = "Oncecheck-Cause"
)

// broker is the NATS server of a runner, embedded (JetStream on a
// temporary directory) or external, and oncecheck's own connection to it.
type broker struct {
	srv *server.Server // nil for an external server
	dir string
	url string
	nc  *nats.Conn
	js  jetstream.JetStream
}

// startBroker starts an embedded server, or connects to url when it is
// not empty.
func startBroker(url string) (*broker, error) {
	b := &broker{url: url}
	if url == "" {
		dir, err := os.MkdirTemp("", "oncecheck-nats-*")
		if err != nil {
			return nil, fmt.Errorf("nats: temporary directory: %w", err)
		}
		b.dir = dir
		srv, err := server.NewServer(&server.Options{
			Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: dir,
			NoLog: true, NoSigs: true, DisableJetStreamBanner: true,
		})
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("nats: embedded server: %w", err)
		}
		srv.Start()
		if !srv.ReadyForConnections(10 * time.Second) {
			srv.Shutdown()
			_ = os.RemoveAll(dir)
			return nil, errors.New("nats: the embedded server did not start within 10s")
		}
		b.srv, b.url = srv, srv.ClientURL()
	}
	nc, err := nats.Connect(b.url, nats.Name("oncecheck"))
	if err != nil {
		b.close()
		return nil, fmt.Errorf("nats: connect to %s: %w", b.url, err)
	}
	b.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		b.close()
		return nil, fmt.Errorf("nats: jetstream: %w", err)
	}
	b.js = js
	return b, nil
}

// reset deletes the streams of the contract, with their consumers, and
// creates them again, empty.
func (b *broker) reset(ctx context.Context) error {
	for name, subject := range map[string]string{InStream: InSubject + ">", OutStream: OutSubject + ">"} {
		if err := b.js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("nats: delete stream %s: %w", name, err)
		}
		if _, err := b.js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject}}); err != nil {
			return fmt.Errorf("nats: create stream %s: %w", name, err)
		}
	}
	return nil
}

// inputs reports the consumers of the input stream: how many messages
// are not yet delivered or not yet acknowledged, and the longest ack wait.
type inputs struct {
	consumers, pending, ackPending int
	ackWait                        time.Duration
}

func (b *broker) inputs(ctx context.Context) (inputs, error) {
	var in inputs
	s, err := b.js.Stream(ctx, InStream)
	if err != nil {
		return in, fmt.Errorf("nats: stream %s: %w", InStream, err)
	}
	l := s.ListConsumers(ctx)
	for ci := range l.Info() {
		in.consumers++
		in.pending += int(ci.NumPending)
		in.ackPending += ci.NumAckPending
		in.ackWait = max(in.ackWait, ci.Config.AckWait)
	}
	if err := l.Err(); err != nil {
		return in, fmt.Errorf("nats: consumers of %s: %w", InStream, err)
	}
	return in, nil
}

func (b *broker) close() {
	if b.nc != nil {
		b.nc.Close()
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}
