// Package all registers every built-in strategy. Import it for its side
// effect:
//
//	import _ "github.com/oncecheck/oncecheck/adapters/all"
package all

import (
	// The built-in strategies register themselves in their init functions.
	_ "github.com/oncecheck/oncecheck/adapters/ackfirst"
	_ "github.com/oncecheck/oncecheck/adapters/dedup"
	_ "github.com/oncecheck/oncecheck/adapters/dedupmarkfirst"
	_ "github.com/oncecheck/oncecheck/adapters/dedupmarklast"
	_ "github.com/oncecheck/oncecheck/adapters/dedupmemory"
	_ "github.com/oncecheck/oncecheck/adapters/deduprepublish"
	_ "github.com/oncecheck/oncecheck/adapters/naive"
	_ "github.com/oncecheck/oncecheck/adapters/outbox"
	_ "github.com/oncecheck/oncecheck/adapters/publishfirst"
	_ "github.com/oncecheck/oncecheck/adapters/reservation"
	_ "github.com/oncecheck/oncecheck/adapters/sequence"
	_ "github.com/oncecheck/oncecheck/adapters/statebased"
	_ "github.com/oncecheck/oncecheck/adapters/version"
)
