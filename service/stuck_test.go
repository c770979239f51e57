package service

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/internal/pgtest"
	"github.com/oncecheck/oncecheck/model"
)

// TestAServiceThatConsumesNothingIsStuck: a command that never consumes
// its input does not drain within the bound: the run is stuck, and says
// so, on a real broker and database.
func TestAServiceThatConsumesNothingIsStuck(t *testing.T) {
	r, err := New(Config{
		Command: "exec sleep 60", ObserveSQL: "SELECT 'o1', '{}'::jsonb WHERE false",
		DSN: pgtest.DSN(t), Consumers: 1, Bound: time.Second,
	})
	require.NoError(t, err)
	defer r.Close()
	c := Case{Workload: model.Workload{{Aggregate: "o1", Type: model.AddItem, Payload: []byte(`{"qty":1,"sku":"a"}`)}}.Number()}
	h, res, err := r.Run(context.Background(), c, 0)
	require.NoError(t, err)
	require.Equal(t, histories.Violation, res.Verdict)
	require.Equal(t, []histories.Anomaly{histories.Stuck}, res.Anomalies)
	last := h.Events[len(h.Events)-1]
	require.Equal(t, histories.Observe, last.Kind, "the state is read all the same")
	var stuck []histories.Event
	for _, ev := range h.Events {
		if ev.Kind == histories.Undrained {
			stuck = append(stuck, ev)
		}
	}
	require.Len(t, stuck, 1)
	require.Contains(t, stuck[0].Detail, "no consumer of ONCECHECK_IN")
}
