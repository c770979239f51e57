package faults

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

func TestParseKinds(t *testing.T) {
	k, err := ParseKinds("redelivery, crash,redelivery")
	require.NoError(t, err)
	require.Equal(t, []Kind{Crash, Redelivery}, k, "stable order, no repeats")
	k, err = ParseKinds("all")
	require.NoError(t, err)
	require.Equal(t, AllKinds, k)
	_, err = ParseKinds("meteor")
	require.ErrorContains(t, err, `unknown fault kind "meteor"`)
	_, err = ParseKinds("")
	require.Error(t, err)
}

func TestPlanQueries(t *testing.T) {
	p := Plan{Faults: []Fault{
		{Kind: Crash, Process: Consumer, At: 2, Point: AfterPublish, Index: 1},
		{Kind: Crash, Process: Dispatcher, At: 0, Point: BeforeCommit},
		{Kind: Redelivery, At: 4},
	}}
	require.True(t, p.Crashes(Consumer, 2, AfterPublish, 1))
	require.False(t, p.Crashes(Consumer, 2, AfterPublish, 0), "publish index matters")
	require.False(t, p.Crashes(Dispatcher, 2, AfterPublish, 1), "process matters")
	require.True(t, p.Crashes(Dispatcher, 0, BeforeCommit, 7), "index is ignored where it means nothing")
	require.True(t, p.LosesAck(4))
	require.False(t, p.LosesAck(2))
	d, passes, boundaries := p.Horizon()
	require.Equal(t, 5, d)
	require.Equal(t, 1, passes)
	require.Zero(t, boundaries)
	require.NoError(t, p.Validate())
	require.Error(t, Plan{Faults: []Fault{{Kind: Crash, Process: "printer", Point: AfterBegin}}}.Validate())
	require.Error(t, Plan{Faults: []Fault{{Kind: "meteor"}}}.Validate())
	require.Error(t, Plan{Faults: []Fault{{Kind: Redelivery, At: -1}}}.Validate())
	require.Error(t, Plan{Faults: []Fault{{Kind: Redelivery, Variant: "sometimes"}}}.Validate())
	require.Error(t, Plan{Faults: []Fault{{Kind: Reorder, Index: 0}}}.Validate(), "a reorder moves a copy at least one place")
	require.Error(t, Plan{Faults: []Fault{{Kind: PublishFailure, Process: Consumer}}}.Validate(), "publish failures need a variant")
}

func TestGeneratorRespectsOptions(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		kinds := rapid.SliceOfNDistinct(rapid.SampledFrom(AllKinds), 1, len(AllKinds), rapid.ID[Kind]).Draw(t, "kinds")
		o := Options{Kinds: kinds, MaxFaults: rapid.IntRange(0, 4).Draw(t, "max"), Deliveries: 6, Messages: 3, MaxPublishes: 2,
			Dispatcher: rapid.Bool().Draw(t, "dispatcher")}
		p := Generator(o).Draw(t, "plan")
		require.LessOrEqual(t, len(p.Faults), o.MaxFaults)
		require.NoError(t, p.Validate())
		for _, f := range p.Faults {
			require.Contains(t, kinds, f.Kind)
			switch f.Kind {
			case Concurrent:
				require.Less(t, f.At, 8*o.Deliveries)
			case Reorder:
				require.Less(t, f.At, o.Deliveries)
				require.LessOrEqual(t, f.Index, ReorderWindow)
			case Reissue:
				require.Less(t, f.At, o.Deliveries)
				require.Less(t, f.Index, o.Messages)
			case Redelivery:
				require.Less(t, f.At, o.Deliveries)
				require.Less(t, f.Index, LeaseSteps)
			default:
				require.Less(t, f.At, o.Deliveries)
				require.Less(t, f.Index, o.MaxPublishes)
			}
			if f.Process == Dispatcher {
				require.True(t, o.Dispatcher)
			}
		}
		leases := slices.ContainsFunc(p.Faults, func(f Fault) bool { return f.Variant == LeaseExpired })
		if slices.Contains(kinds, Concurrent) || leases {
			require.Equal(t, 2, p.ConsumerCount(), "concurrent, or a lease that expires")
		} else {
			require.Equal(t, 1, p.ConsumerCount())
		}
	})
}
