package memstore

import (
	"testing"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/storetest"
	"github.com/stretchr/testify/require"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) adapters.Store {
		s, err := Backend{}.Open(adapters.StoreOptions{})
		require.NoError(t, err)
		return s
	})
}
