package memstore

import (
	"testing"

	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) adapters.Store { return NewBackend() })
}
