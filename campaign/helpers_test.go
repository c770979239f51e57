package campaign

import (
	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/model"
)

// builtin is the catalogue the tests resolve names with.
var builtin = catalogue.Builtin()

// strat returns the built-in strategy called name; an unknown name gives
// the zero strategy, which New refuses.
func strat(name string) adapters.Strategy {
	s, _ := builtin.Strategy(name)
	return s
}

// strats returns the built-in strategies called names.
func strats(names ...string) []adapters.Strategy {
	out := make([]adapters.Strategy, len(names))
	for i, n := range names {
		out[i] = strat(n)
	}
	return out
}

// mdl returns the built-in model called name (nil when unknown).
func mdl(name string) model.Model {
	m, _ := builtin.Model(name)
	return m
}
