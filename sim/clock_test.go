package sim

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// probe is a handler that records, on each delivery, the run's time and
// what the cache holds, counts its deliveries in the cache, writes the
// count in a transaction it rolls back, and fails its first attempt after
// the INCR.
type probe struct {
	seen *[]string
	now  *[]time.Time
}

func (p probe) Handle(env adapters.Env, msg model.Message) error {
	*p.now = append(*p.now, env.Now())
	n, err := env.Cache().Incr("deliveries")
	if err != nil {
		return err
	}
	tx, err := env.Begin()
	if err != nil {
		return err
	}
	_ = tx.Rollback() // the cache is not part of it
	v, _, err := env.Cache().Get("deliveries")
	if err != nil {
		return err
	}
	*p.seen = append(*p.seen, v)
	if n == 1 {
		return errors.New("first attempt fails")
	}
	return env.Ack()
}

func (probe) Observe(adapters.Tx, model.Model, string) (model.State, error) {
	return model.State(`{"confirmed":false,"lines":{}}`), nil
}

// TestTheCacheOutlivesCrashesAndRollbacks holds that a cache command is
// visible at once, survives the process's crash and a rollback, and that a
// crash can strike just after a command.
func TestTheCacheOutlivesCrashesAndRollbacks(t *testing.T) {
	var seen []string
	var now []time.Time
	s := adapters.Strategy{Name: "probe", NewHandler: func() adapters.Handler { return probe{&seen, &now} }}
	plan := faults.Plan{Faults: []faults.Fault{{Kind: faults.Crash, Process: faults.Consumer, At: 1, Point: faults.AfterCache}}}
	evs, err := Run(withStore(Config{Model: model.Orders{}, Strategy: s, Workload: oneAdd, Plan: plan}))
	require.NoError(t, err)
	// Attempt 1 fails after INCR (1), attempt 2 crashes after INCR (2),
	// attempt 3 counts 3.
	require.Equal(t, []string{"1", "3"}, seen)
	var cmds []string
	for _, ev := range evs {
		if ev.Kind == histories.CacheCmd {
			cmds = append(cmds, ev.Detail)
		}
	}
	require.Equal(t, []string{"INCR deliveries: 1", `GET deliveries: "1"`, "INCR deliveries: 2", "INCR deliveries: 3", `GET deliveries: "3"`}, cmds)
	require.True(t, now[0].Equal(Epoch().Add(2*Tick)), "the first attempt sees the time of its two events: %s", now[0])
	require.True(t, now[1].After(now[0]))
}

// TestALateCopyArrivesAfterItsDelay holds that a late copy is queued once
// the run's time has passed its delay: the run, idle, jumps to it.
func TestALateCopyArrivesAfterItsDelay(t *testing.T) {
	var seen []string
	var now []time.Time
	s := adapters.Strategy{Name: "probe", NewHandler: func() adapters.Handler { return probe{&seen, &now} }}
	for _, variant := range []string{faults.LateCopy, faults.LateReissue} {
		seen, now = nil, nil
		plan := faults.Plan{Faults: []faults.Fault{{Kind: faults.Late, At: 1, Variant: variant, Delay: faults.Duration(time.Hour)}}}
		evs, err := Run(withStore(Config{Model: model.Orders{}, Strategy: s, Workload: oneAdd, Plan: plan}))
		require.NoError(t, err)
		require.Len(t, now, 3, "a first attempt, its retry, and the late copy")
		require.GreaterOrEqual(t, now[2].Sub(now[1]), time.Hour)
		require.Less(t, now[2].Sub(now[1]), time.Hour+time.Second)
		late := 0
		for _, ev := range evs {
			if ev.Fault == string(faults.Late) {
				late++
				if variant == faults.LateReissue {
					require.Equal(t, histories.Send, ev.Kind)
					require.Equal(t, "m1-r1", ev.Message.ID)
				} else {
					require.Equal(t, histories.Requeue, ev.Kind)
				}
			}
		}
		require.Equal(t, 1, late)
	}
}
