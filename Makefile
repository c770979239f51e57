# oncecheck's development tasks. `make test` is what CI runs (.ci/run).
GO ?= go
PKGS := ./...

.PHONY: all test test-deps lint bench soak corpus fuzz

all: lint test

## test: lint, then every test with the race detector (-short: without the
## heavy statistical tests, and rapid checks divided by 5), then the 32
## parallel Verify campaigns under -race three times, then the root,
## campaign and checker packages' tests again without -race and -short,
## heavy ones included. Tests that need PostgreSQL get it through
## scripts/with-postgres.sh (ONCECHECK_PG, the server on 127.0.0.1:5432, or
## a throwaway server), and those that need Redis through
## scripts/with-redis.sh (ONCECHECK_REDIS, 127.0.0.1:6379, or a throwaway
## redis-server), and those that need RabbitMQ (service mode on amqp)
## through scripts/with-rabbitmq.sh (ONCECHECK_AMQP, 127.0.0.1:5672, or a
## throwaway rabbitmq-server node). Kafka (kfake) and NATS run embedded.
test: lint test-deps
	./scripts/with-postgres.sh ./scripts/with-redis.sh ./scripts/with-rabbitmq.sh sh -c '$(GO) test -race -short -count=1 $(PKGS) && \
		$(GO) test -race -count=3 -run "^TestParallelVerifyShareNothing$$" . && \
		$(GO) test -count=1 . ./campaign ./checkers'

## test-deps: what the tests need beyond Go and PostgreSQL: a headless
## Chromium for the HTML report test (report/), and redis-server when no
## Redis is named ($$ONCECHECK_REDIS) and none is installed (the Redis
## tests start a throwaway one when nothing answers on 127.0.0.1:6379).
## What is missing is said, then installed from Debian's packages with
## apt-get (as root, or through sudo), unless NO_INSTALL=1 or there is no
## apt-get: the tests that need it then skip, saying why (under $$CI they
## fail). Node.js and npm, for the Node.js example service
## (examples/node-service), are installed that way only under $$CI;
## elsewhere their absence is said and that example is skipped.
test-deps:
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then :; \
	elif [ -z "$${CI:-}" ] || [ -n "$(NO_INSTALL)" ] || ! command -v apt-get >/dev/null 2>&1; then \
		echo "test-deps: no node or npm on PATH: the Node.js example service (examples/node-service) will be SKIPPED (fails under \$$CI); install Node.js 18 or later with npm to run it"; \
	else \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "test-deps: no node or npm, needed by the Node.js example service: installing Debian's nodejs and npm packages with $${SUDO:+sudo }apt-get (NO_INSTALL=1 skips this)"; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm >/dev/null && echo "test-deps: nodejs and npm installed"; \
	fi
	@if command -v redis-server >/dev/null 2>&1 || [ -n "$${ONCECHECK_REDIS:-}" ] || bash -c "exec 3<>/dev/tcp/127.0.0.1/6379" 2>/dev/null; then :; \
	elif [ -n "$(NO_INSTALL)" ] || ! command -v apt-get >/dev/null 2>&1; then \
		echo "test-deps: no Redis: the Redis tests will be skipped (fail under \$$CI); install redis-server or set ONCECHECK_REDIS"; \
	else \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "test-deps: no Redis, needed by the Redis tests: installing Debian's redis-server package with $${SUDO:+sudo }apt-get (NO_INSTALL=1 skips this)"; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null && echo "test-deps: redis-server installed"; \
	fi
	@if command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || [ -n "$${ONCECHECK_AMQP:-}" ] || bash -c "exec 3<>/dev/tcp/127.0.0.1/5672" 2>/dev/null; then :; \
	elif [ -n "$(NO_INSTALL)" ] || ! command -v apt-get >/dev/null 2>&1; then \
		echo "test-deps: no RabbitMQ: the RabbitMQ tests will be skipped (fail under \$$CI); install rabbitmq-server or set ONCECHECK_AMQP"; \
	else \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "test-deps: no RabbitMQ, needed by service mode's RabbitMQ tests: installing Debian's rabbitmq-server package with $${SUDO:+sudo }apt-get (NO_INSTALL=1 skips this)"; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq rabbitmq-server >/dev/null && echo "test-deps: rabbitmq-server installed"; \
	fi
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ -n "$(NO_INSTALL)" ] || ! command -v apt-get >/dev/null 2>&1; then \
		echo "test-deps: no Chromium on PATH: the HTML report test will be skipped (fails under \$$CI); install one (Debian: apt-get install chromium) to run it"; \
	else \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "test-deps: no Chromium on PATH, needed by the HTML report test: installing Debian's chromium package with $${SUDO:+sudo }apt-get (NO_INSTALL=1 skips this)"; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null && echo "test-deps: chromium installed"; \
	fi

## lint: formatting, go vet, staticcheck (pinned, fetched through the Go
## module proxy on first use) and a tidy go.mod.
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)
	$(GO) mod tidy -diff

## bench: every benchmark family (scripts/bench.sh; raw output in
## bench-latest.txt), then the summary tables. Ratios are measured within
## one run; the PostgreSQL family gets a server as the tests do.
bench:
	GO=$(GO) ./scripts/with-postgres.sh ./scripts/bench.sh

## soak: the expected matrix with 20,000 runs in every safe cell, the
## checker against the brute-force oracle on 100,000 histories, and the
## explanations against the oracle of the simplest explanation on 100,000
## generated and hand-mutated histories (verdicts and names).
soak:
	$(GO) test -count=1 -timeout 2h -run 'TestMatrixMatchesExpectation' ./campaign -oncecheck.soak
	$(GO) test -count=1 -timeout 1h -run 'TestCheckerAgreesWithBruteForce' ./checkers -rapid.checks=100000
	$(GO) test -count=1 -timeout 1h -v -run 'TestExplanationsAgreeWithOracle' ./checkers -oncecheck.explain-histories=100000

## corpus: regenerate the regression corpus of saved histories: a shrunk
## counterexample for every unsafe matrix cell of every model, and passing
## histories. Run it after a change to the simulation or the format.
CORPUS := histories/testdata/corpus
corpus:
	rm -rf $(CORPUS) && mkdir -p $(CORPUS)
	$(GO) run ./cmd/oncecheck matrix --out $(CORPUS) --shrink-time 10s --format json > /dev/null
	for s in outbox reservation version; do \
		$(GO) run ./cmd/oncecheck run --strategy $$s --faults crash,redelivery --runs 3 --seed 11 --keep-all --out $(CORPUS) > /dev/null || exit 1; \
	done
	$(GO) run ./cmd/oncecheck run --strategy version --model profiles --runs 3 --seed 11 --keep-all --out $(CORPUS) > /dev/null

## fuzz: fuzz the history reader for FUZZTIME (default 2 minutes). Failing
## inputs land in histories/testdata/fuzz/ and become regression seeds.
FUZZTIME ?= 2m
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./histories
