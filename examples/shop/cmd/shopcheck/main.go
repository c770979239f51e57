// Command shopcheck is oncecheck's command line for the shop: the
// built-in models and strategies, plus the shop's model, its handler and
// its broken variant. It opens the shop's counterexamples, which the
// tests' failures name: go run ./examples/shop/cmd/shopcheck show FILE.
package main

import (
	"os"

	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/cli"
	"github.com/oncecheck/oncecheck/examples/shop"
)

func main() {
	cat := catalogue.Builtin().WithModels(shop.Model).WithStrategies(shop.Strategy, shop.Broken)
	os.Exit(cli.Main(os.Args[1:], cat))
}
