package checkers

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// deposit adds a complete attempt at Deposit{amount} (message id, key k)
// that commits and publishes Deposited with the balance it reaches.
func (b *builder) deposit(attempt int, id, key string, amount, balance int) *builder {
	payload := fmt.Sprintf(`{"amount":%d}`, amount)
	return b.deliver(attempt, id, key, "a1", model.Deposit, payload).at(histories.Commit, attempt).
		publish(attempt, id+"/out1", key, model.Deposited, fmt.Sprintf(`{"amount":%d,"balance":%d}`, amount, balance)).
		at(histories.Ack, attempt).at(histories.Done, attempt)
}

func (b *builder) sendDeposit(id, key string, amount int) *builder {
	return b.send(id, key, "a1", model.Deposit, fmt.Sprintf(`{"amount":%d}`, amount))
}

// TestExplainReissueAfterCrash: k1 commits and crashes before publishing;
// k2 and k3 go through; a re-issued copy of k1 is applied again, last.
// The plain truth is "k1 applied twice, after all the others": duplicate
// alone, not lost beside inconsistent.
func TestExplainReissueAfterCrash(t *testing.T) {
	b := (&builder{}).sendDeposit("m1", "k1", 1).sendDeposit("m2", "k2", 2).sendDeposit("m3", "k3", 4).
		deliver(1, "m1", "k1", "a1", model.Deposit, `{"amount":1}`).at(histories.Commit, 1).at(histories.Crash, 1).
		deposit(2, "m2", "k2", 2, 3).deposit(3, "m3", "k3", 4, 7).
		sendDeposit("m1b", "k1", 1).deposit(4, "m1b", "k1", 1, 8).
		observe("a1", `{"balance":8}`)
	res, err := Check(&b.h, model.Accounts{}, Options{})
	require.NoError(t, err)
	require.Equal(t, []histories.Anomaly{histories.Duplicate}, res.Anomalies)
	require.Equal(t, []string{"k1"}, res.Findings[0].Keys)
	require.Contains(t, res.Findings[0].Text, "was applied twice")
	require.Contains(t, res.Expected, "  the simplest explanation (1 deviation from exactly-once) applies k1, k2, k3, k1")
}

// TestExplainTwoDeviations: two messages each applied twice is two
// duplicates, nothing else.
func TestExplainTwoDeviations(t *testing.T) {
	b := (&builder{}).sendDeposit("m1", "k1", 1).sendDeposit("m2", "k2", 2).
		deposit(1, "m1", "k1", 1, 1).deposit(2, "m2", "k2", 2, 3).
		deliver(3, "m1", "k1", "a1", model.Deposit, `{"amount":1}`).at(histories.Commit, 3).at(histories.Crash, 3).
		deliver(4, "m2", "k2", "a1", model.Deposit, `{"amount":2}`).at(histories.Commit, 4).at(histories.Crash, 4).
		observe("a1", `{"balance":6}`)
	res, err := Check(&b.h, model.Accounts{}, Options{})
	require.NoError(t, err)
	require.Equal(t, []histories.Anomaly{histories.Duplicate}, res.Anomalies)
	require.Len(t, res.Findings, 2)
	require.Contains(t, res.Expected, "  the simplest explanation (2 deviations from exactly-once) applies k1, k2, k1, k2")
}

// newestFirst is an outbox relay's run: k1 and k2 are committed with
// their outputs in the outbox, and the relay publishes each aggregate's
// events newest first.
func newestFirst() *builder {
	b := (&builder{}).sendDeposit("m1", "k1", 1).positioned(1).sendDeposit("m2", "k2", 2).positioned(2)
	for i, d := range []struct {
		id, key string
		amount  int
	}{{"m1", "k1", 1}, {"m2", "k2", 2}} {
		b.deliver(i+1, d.id, d.key, "a1", model.Deposit, fmt.Sprintf(`{"amount":%d}`, d.amount)).
			at(histories.Commit, i+1).at(histories.Ack, i+1).at(histories.Done, i+1)
	}
	return b.publish(0, "m2/out1", "k2", model.Deposited, `{"amount":2,"balance":3}`).
		publish(0, "m1/out1", "k1", model.Deposited, `{"amount":1,"balance":1}`).
		observe("a1", `{"balance":3}`)
}

func TestOutputOrder(t *testing.T) {
	res, err := Check(&newestFirst().h, model.Accounts{}, Options{})
	require.NoError(t, err)
	require.Equal(t, histories.Pass, res.Verdict, "accounts' streams are not ordered: the output order is not checked by default")

	res, err = Check(&newestFirst().h, model.Accounts{}, Options{OutputOrder: OutputOrderChecked})
	require.NoError(t, err)
	require.Equal(t, histories.Violation, res.Verdict)
	require.Equal(t, []histories.Anomaly{histories.OutOfOrder}, res.Anomalies)
	require.Equal(t, []string{"k2", "k1"}, res.Findings[0].Keys)
	require.Contains(t, res.Findings[0].Text, "were published (step 11) before those of k1")

	quick, err := Check(&newestFirst().h, model.Accounts{}, Options{OutputOrder: OutputOrderChecked, VerdictOnly: true})
	require.NoError(t, err)
	require.Equal(t, histories.Violation, quick.Verdict)

	res, err = Check(&newestFirst().h, orderedAccounts{}, Options{})
	require.NoError(t, err)
	require.Equal(t, []histories.Anomaly{histories.OutOfOrder}, res.Anomalies, "on by default where the model's streams are ordered")
	res, err = Check(&newestFirst().h, orderedAccounts{}, Options{OutputOrder: OutputOrderIgnored})
	require.NoError(t, err)
	require.Equal(t, histories.Pass, res.Verdict)

	_, err = Check(&newestFirst().h, model.Accounts{}, Options{OutputOrder: "sorted"})
	require.ErrorContains(t, err, `unknown output-order policy "sorted"`)
}

// orderedAccounts is the accounts model with ordered streams.
type orderedAccounts struct{ model.Accounts }

func (orderedAccounts) Ordered() bool { return true }

// TestStuckComparesWhatDrained: a stuck run names the messages no attempt
// finished, and compares the state of what did drain.
func TestStuckComparesWhatDrained(t *testing.T) {
	stuck := histories.Event{Kind: histories.Undrained, Process: "broker", Detail: "1 copy still queued (m2)"}
	b := (&builder{}).sendDeposit("m1", "k1", 1).sendDeposit("m2", "k2", 2).
		deposit(1, "m1", "k1", 1, 1).
		deliver(2, "m2", "k2", "a1", model.Deposit, `{"amount":2}`).at(histories.Crash, 2).
		add(stuck).observe("a1", `{"balance":1}`)
	res, err := Check(&b.h, model.Accounts{}, Options{})
	require.NoError(t, err)
	require.Equal(t, histories.Violation, res.Verdict)
	require.Equal(t, []histories.Anomaly{histories.Stuck}, res.Anomalies, "k2 is pending: not lost")
	require.Contains(t, res.Findings[0].Text, `no attempt finished k2 (Deposit{"amount":2} to a1), which will never apply`)

	b = (&builder{}).sendDeposit("m1", "k1", 1).sendDeposit("m2", "k2", 2).
		deliver(1, "m1", "k1", "a1", model.Deposit, `{"amount":1}`).at(histories.Ack, 1).at(histories.Done, 1).
		deliver(2, "m2", "k2", "a1", model.Deposit, `{"amount":2}`).at(histories.Crash, 2).
		add(stuck).observe("a1", `{"balance":0}`)
	res, err = Check(&b.h, model.Accounts{}, Options{})
	require.NoError(t, err)
	require.Equal(t, []histories.Anomaly{histories.Stuck, histories.Lost}, res.Anomalies, "k1 finished, and its effect is missing")
}
