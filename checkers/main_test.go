package checkers

import (
	"flag"
	"os"
	"testing"
)

// TestMain raises rapid's number of checks for this package (the brute-force
// comparison is cheap and is the checker's main safety net) unless
// -rapid.checks is given.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	if !set {
		_ = flag.Set("rapid.checks", "5000")
	}
	os.Exit(m.Run())
}
