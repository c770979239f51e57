package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oncecheck/oncecheck/model"
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

// natsInDuplicates is the duplicate window of ONCECHECK_IN, JetStream's
// shortest (its default is two minutes): oncecheck publishes each id
// once, but for a late copy (late.go), which stands for a producer's
// retry arriving after the window and must not wait two minutes for it.
// ONCECHECK_OUT keeps the default: the service's outputs with one id count
// once.
const natsInDuplicates = 100 * time.Millisecond

// natsBroker is the NATS server of a runner, embedded (JetStream on a
// temporary directory) or external, and oncecheck's own connection to it.
type natsBroker struct {
	// mu is held (for writing) while the embedded server restarts: what
	// asks the server (inputs, reset, send) waits for it to be back.
	mu   sync.RWMutex
	srv  *server.Server // nil for an external server
	opts server.Options // the embedded server's, for a restart
	dir  string
	url  string
	nc   *nats.Conn
	js   jetstream.JetStream
}

// startNATS starts an embedded server, or connects to url when it is
// not empty.
func startNATS(url string) (*natsBroker, error) {
	b := &natsBroker{url: url}
	if url == "" {
		dir, err := os.MkdirTemp("", "oncecheck-nats-*")
		if err != nil {
			return nil, fmt.Errorf("nats: temporary directory: %w", err)
		}
		b.dir = dir
		b.opts = server.Options{
			Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: dir,
			NoLog: true, NoSigs: true, DisableJetStreamBanner: true,
		}
		opts := b.opts
		srv, err := server.NewServer(&opts)
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
	nc, err := nats.Connect(b.url, nats.Name("oncecheck"), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
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
func (b *natsBroker) reset(ctx context.Context) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for name, subject := range map[string]string{InStream: InSubject + ">", OutStream: OutSubject + ">"} {
		if err := b.js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("nats: delete stream %s: %w", name, err)
		}
		cfg := jetstream.StreamConfig{Name: name, Subjects: []string{subject}}
		if name == InStream {
			cfg.Duplicates = natsInDuplicates
		}
		if _, err := b.js.CreateStream(ctx, cfg); err != nil {
			return fmt.Errorf("nats: create stream %s: %w", name, err)
		}
	}
	return nil
}

func (b *natsBroker) inputs(ctx context.Context) (inputs, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
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

// send publishes a workload copy to oncecheck.in.<aggregate>.
func (b *natsBroker) send(ctx context.Context, m model.Message, ordered bool) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	msg := nats.NewMsg(InSubject + m.Aggregate)
	msg.Data = m.Payload
	msg.Header.Set(HeaderMsgID, m.ID)
	msg.Header.Set(HeaderKey, m.Key)
	msg.Header.Set(HeaderType, m.Type)
	msg.Header.Set(HeaderAggregate, m.Aggregate)
	if ordered {
		msg.Header.Set(HeaderPosition, strconv.FormatInt(m.Position, 10))
	}
	ack, err := b.js.PublishMsg(ctx, msg)
	if err != nil {
		return fmt.Errorf("nats: publish %s: %w", m.ID, err)
	}
	if ack.Duplicate {
		return fmt.Errorf("nats: publish %s: %w", m.ID, errDuplicate)
	}
	return nil
}

// requeue negatively acknowledges the deliveries, whose tokens are their
// ack subjects.
func (b *natsBroker) requeue(tokens []string) bool {
	for _, t := range tokens {
		_ = b.nc.Publish(t, []byte("-NAK"))
	}
	return true
}

// proxy starts a NATS protocol proxy in front of the server.
func (b *natsBroker) proxy(index int, gen func() int, h hooks) (brokerProxy, error) {
	up, err := upstreamAddr(b.url)
	if err != nil {
		return nil, err
	}
	return newNATSProxy(up, index, gen, h)
}

func (b *natsBroker) input() string { return InStream }

// restartable implements restarter: an embedded server can be
// restarted, an external one ($ONCECHECK_NATS) cannot.
func (b *natsBroker) restartable() error {
	if b.opts.StoreDir == "" {
		return fmt.Errorf("%w; the NATS server %s is external ($ONCECHECK_NATS or --broker-url)", errNoRestart, b.url)
	}
	return nil
}

// restart implements restarter: it shuts the embedded server down and
// starts a new one with the same options, store directory and port, then
// waits for oncecheck's own connection to be back.
func (b *natsBroker) restart(ctx context.Context) (time.Duration, error) {
	if err := b.restartable(); err != nil {
		return 0, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	addr, ok := b.srv.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("nats: the embedded server has no TCP address")
	}
	t0 := time.Now()
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
	opts := b.opts
	opts.Port = addr.Port
	var srv *server.Server
	var err error
	for range 50 { // the port may take a moment to be free again
		if srv, err = server.NewServer(&opts); err == nil {
			srv.Start()
			if srv.ReadyForConnections(10 * time.Second) {
				break
			}
			srv.Shutdown()
			err = fmt.Errorf("nats: the restarted server did not listen on port %d within 10s", addr.Port)
		}
		if serr := sleepCtx(ctx, 20*time.Millisecond); serr != nil {
			return time.Since(t0), serr
		}
	}
	if err != nil {
		return time.Since(t0), fmt.Errorf("nats: restart the embedded server: %w", err)
	}
	b.srv = srv
	down := time.Since(t0)
	deadline := time.Now().Add(10 * time.Second)
	for !b.nc.IsConnected() {
		if time.Now().After(deadline) {
			return down, errors.New("nats: oncecheck's connection did not come back within 10s of the restart")
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return down, err
		}
	}
	// JetStream recovers its streams as the server starts; its API may
	// still time out for a moment: the restart ends when it answers.
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := b.js.Stream(actx, InStream)
		cancel()
		if err == nil {
			return down, nil
		}
		if time.Now().After(deadline) {
			return down, fmt.Errorf("nats: JetStream did not answer within 10s of the restart: %w", err)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return down, err
		}
	}
}

func (b *natsBroker) close() {
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
