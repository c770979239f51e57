// Command oncecheck proves or refutes a message handler's exactly-once
// guarantee. See `oncecheck help`.
//
// It is package cli over the built-in models and strategies (and both
// backends); a main of one's own passes a catalogue with one's own model
// and handler to cli.Main in the same way.
package main

import (
	"os"

	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], catalogue.Builtin()))
}
