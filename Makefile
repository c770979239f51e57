# oncecheck's development tasks. `make test` is what CI runs (.ci/run).
GO ?= go
PKGS := ./...

.PHONY: all test lint bench soak

all: lint test

## test: vet, then every test with the race detector (-short: without the
## heavy statistical tests, and rapid checks divided by 5), then the root and checker packages'
## tests again without -race and -short, heavy ones included. Tests that
## need PostgreSQL get it through scripts/with-postgres.sh (ONCECHECK_PG,
## the server on 127.0.0.1:5432, or a throwaway server).
test: lint
	./scripts/with-postgres.sh sh -c '$(GO) test -race -short -count=1 $(PKGS) && $(GO) test -count=1 . ./checkers'

## lint: formatting and go vet.
lint:
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

## bench: Go benchmarks (ratios are measured within one run).
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

## soak: the expected matrix with 20,000 runs in every safe cell.
soak:
	$(GO) test -count=1 -timeout 2h -run 'TestMatrixMatchesExpectation' . -oncecheck.soak
