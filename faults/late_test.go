package faults

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

func TestLateDelaysFallAroundTheWindowsTheMaximumAllows(t *testing.T) {
	require.Equal(t, []time.Duration{time.Hour - LateMargin, time.Hour + LateMargin, DefaultMaxDelay},
		LateDelays([]time.Duration{time.Hour}, 0))
	require.Equal(t, []time.Duration{2 * time.Hour}, LateDelays([]time.Duration{2 * time.Hour}, 2*time.Hour),
		"a window at the maximum is never passed")
	require.Equal(t, []time.Duration{time.Minute}, LateDelays(nil, time.Minute))
}

func TestADurationReadsAsWritten(t *testing.T) {
	f := Fault{Kind: Late, At: 2, Variant: LateReissue, Delay: Duration(time.Hour + time.Second)}
	b, err := json.Marshal(f)
	require.NoError(t, err)
	require.JSONEq(t, `{"kind":"late","variant":"reissue","at":2,"delay":"1h0m1s"}`, string(b))
	var back Fault
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, f, back)
	require.NoError(t, json.Unmarshal([]byte(`{"kind":"late","at":0,"delay":1000000000}`), &back))
	require.Equal(t, Duration(time.Second), back.Delay)
	require.Error(t, json.Unmarshal([]byte(`{"kind":"late","at":0,"delay":"soon"}`), &back))
	require.Error(t, Plan{Faults: []Fault{{Kind: Late}}}.Validate(), "a late fault needs a delay")
}

func TestGeneratedLateFaultsUseTheDeclaredWindows(t *testing.T) {
	gen := Generator(Options{Kinds: []Kind{Late}, MaxFaults: 3, Deliveries: 4, Messages: 2, Windows: []time.Duration{time.Minute}, MaxDelay: time.Hour})
	rapid.Check(t, func(t *rapid.T) {
		p := gen.Draw(t, "plan")
		require.NoError(t, p.Validate())
		for _, f := range p.Faults {
			require.Contains(t, []Duration{Duration(time.Minute - LateMargin), Duration(time.Minute + LateMargin), Duration(time.Hour)}, f.Delay)
		}
	})
}
