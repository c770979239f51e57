package memstore

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, o adapters.StoreOptions) adapters.Store {
		s, err := Backend{}.Open(o)
		require.NoError(t, err)
		return s
	})
}
