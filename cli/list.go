package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/oncecheck/oncecheck/catalogue"
	"github.com/oncecheck/oncecheck/faults"
)

var faultSummaries = map[faults.Kind]string{
	faults.Crash:          "a consumer or dispatcher dies at a boundary (before handling, after begin, after a write, before/after commit, before/after each publish, before ack)",
	faults.Redelivery:     "a copy comes again: ack lost, broker duplicate, or lease expired while handling",
	faults.Reorder:        "a copy is delivered before copies queued ahead of it (up to 3 places)",
	faults.PublishFailure: "the broker rejects a publish, fails part-way through a batch, or accepts it but reports a failure",
	faults.Reissue:        "the sender sends an intent again with a new message id and the same idempotence key",
	faults.Concurrent:     "two consumers whose steps interleave; each fault preempts the running one at a boundary",
	faults.Late:           "a copy comes again, or is re-issued, after a delay in the run's time: just before or just past a TTL or window the strategy declares, or --max-delay",
}

func listCmd(_ context.Context, cat catalogue.Catalogue, args []string, stdout, _ io.Writer) (int, error) {
	fs := newFlagSet("list", "list", "  oncecheck list\n", stdout)
	if rest, err := parse(fs, args); err != nil {
		return exitUsage, err
	} else if len(rest) > 0 {
		return exitUsage, usagef("unexpected argument %q", rest[0])
	}
	fmt.Fprintln(stdout, "Strategies:")
	for _, s := range cat.Strategies {
		fmt.Fprintf(stdout, "  %-17s %s\n", s.Name, s.Summary)
	}
	fmt.Fprintln(stdout, "Models:")
	for _, m := range cat.Models {
		fmt.Fprintf(stdout, "  %-17s %s\n", m.Name(), m.Describe())
	}
	fmt.Fprintln(stdout, "Faults:")
	for _, k := range faults.AllKinds {
		fmt.Fprintf(stdout, "  %-17s %s\n", k, faultSummaries[k])
	}
	fmt.Fprintf(stdout, "  %-17s %s\n", "all", "every kind above")
	fmt.Fprintln(stdout, "Backends:")
	fmt.Fprintf(stdout, "  %-17s %s\n", "mem", "embedded in-memory store with PostgreSQL's isolation levels and row locks")
	fmt.Fprintf(stdout, "  %-17s %s\n", "pg", "PostgreSQL through pgx (--pg DSN or $ONCECHECK_PG): REPEATABLE READ, the same semantics")
	fmt.Fprintln(stdout, "Caches (--cache, the handlers' Env.Cache):")
	fmt.Fprintf(stdout, "  %-17s %s\n", "mem", "in memory, part of the simulation: Redis's semantics, expiry in the run's time")
	fmt.Fprintf(stdout, "  %-17s %s\n", "redis", "a real Redis through go-redis ($ONCECHECK_REDIS, else 127.0.0.1:6379): one Lua script per command")
	var na []string
	for _, s := range cat.Strategies {
		for _, m := range cat.Models {
			if err := s.Check(m); err != nil {
				na = append(na, fmt.Sprintf("  %s with %s: %v", s.Name, m.Name(), err))
			}
		}
	}
	if len(na) > 0 {
		fmt.Fprintf(stdout, "Combinations that do not apply:\n%s\n", strings.Join(na, "\n"))
	}
	return exitPass, nil
}
