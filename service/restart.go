package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
)

// restarter is a broker that can be stopped and started again on the
// same storage and address, for a broker-restart fault: an optional part
// of a broker (an embedded NATS server has it; an external server does
// not).
type restarter interface {
	// restartable says why this broker cannot be restarted, nil if it can.
	restartable() error
	// restart stops the broker and starts it again, its storage kept,
	// and returns once it accepts connections and oncecheck's own
	// connection is back; it says how long the broker was down.
	restart(ctx context.Context) (time.Duration, error)
}

// errNoRestart is returned for a broker-restart fault on a broker that
// cannot be restarted.
var errNoRestart = errors.New("service: this broker cannot be restarted by oncecheck: broker-restart needs a broker oncecheck runs itself (an embedded NATS server)")

// restartable says why a broker-restart fault cannot be injected on b,
// nil if it can.
func restartable(b broker) error {
	r, ok := b.(restarter)
	if !ok {
		return errNoRestart
	}
	return r.restartable()
}

// restartBroker restarts the broker at a broker-restart fault, after
// delivery a; it does not hold rn.mu. The run is busy (not drained)
// until the broker is back.
func (rn *run) restartBroker(a *attempt, f faults.Fault) {
	defer func() {
		rn.mu.Lock()
		rn.busy--
		rn.last = time.Now()
		rn.mu.Unlock()
	}()
	r, ok := rn.r.b.(restarter)
	if !ok {
		rn.mu.Lock()
		rn.add(histories.Event{Kind: histories.Restart, Process: "broker", Fault: string(f.Kind), Detail: errNoRestart.Error()})
		rn.mu.Unlock()
		return
	}
	rn.mu.Lock()
	rn.add(histories.Event{Kind: histories.Restart, Process: "broker", Fault: string(f.Kind), Detail: fmt.Sprintf("just after delivery #%d (attempt %d, to %s), oncecheck stops the broker, to start it again on the same storage and address: every connection to it drops", a.n, a.n, a.proc.name())})
	rn.mu.Unlock()
	down, err := r.restart(rn.ctx)
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if err != nil {
		rn.add(histories.Event{Kind: histories.Restart, Process: "broker", Fault: string(f.Kind), Detail: fmt.Sprintf("the broker did not come back: %v", err)})
		return
	}
	rn.brokerBack = time.Now()
	rn.add(histories.Event{Kind: histories.Restart, Process: "broker", Fault: string(f.Kind), Detail: fmt.Sprintf("the broker runs again on the same storage and address, after %s down; clients reconnect, unacknowledged copies come back after their ack wait", down.Round(time.Millisecond))})
}
