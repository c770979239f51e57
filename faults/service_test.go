package faults

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestServiceKindsValidateButAreNotParsedByDefault(t *testing.T) {
	p := Plan{Consumers: 2, Faults: []Fault{{Kind: CutConnection, At: 1, Index: 2}, {Kind: BrokerRestart, At: 0}}}
	require.NoError(t, p.Validate())
	require.Contains(t, p.Faults[0].String(), "statement #3")
	require.Contains(t, p.Faults[1].String(), "after delivery #1")
	require.Error(t, Plan{Faults: []Fault{{Kind: "cut-everything"}}}.Validate())

	_, err := ParseKinds("cut-connection")
	require.ErrorContains(t, err, "unknown fault kind")
	ks, err := ParseKindsOf("broker-restart,crash,cut-connection", append(AllKinds[:len(AllKinds):len(AllKinds)], ServiceKinds...))
	require.NoError(t, err)
	require.Equal(t, []Kind{Crash, CutConnection, BrokerRestart}, ks)
	all, err := ParseKindsOf("all", ServiceKinds)
	require.NoError(t, err)
	require.Equal(t, ServiceKinds, all)
}
