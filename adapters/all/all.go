// Package all registers every built-in strategy. Import it for its side
// effect:
//
//	import _ "github.com/oncecheck/oncecheck/adapters/all"
package all

import (
	// The built-in strategies register themselves in their init functions.
	_ "github.com/oncecheck/oncecheck/adapters/dedup"
	_ "github.com/oncecheck/oncecheck/adapters/naive"
	_ "github.com/oncecheck/oncecheck/adapters/outbox"
)
