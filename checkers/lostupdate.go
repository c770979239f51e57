package checkers

import (
	"fmt"
	"slices"

	"github.com/oncecheck/oncecheck/histories"
)

// A lost update is what a handler that reads an aggregate's state without
// a lock and writes it back does under read committed: two attempts read
// the same state, and the later committer's write replaces the earlier
// one's change. The history shows it as two committed transactions, of
// attempts at different messages, that wrote the same key, the later
// committer's begun before the earlier one's commit. Reads are not
// events: what the history knows is that the overwriting transaction
// began before the commit it overwrote.

// transaction is a committed transaction of an attempt.
type transaction struct {
	l         *logical
	tx        int            // its number (0 where the history gives none)
	begun     int            // step of its begin event
	commit    int            // step of its commit
	writes    []string       // the keys it wrote ("table/key"), in the order first written
	writtenAt map[string]int // the step of its last write of each key
}

// overwrite is one lost update: over's transaction began before under's
// commit and committed a write of key after it.
type overwrite struct {
	over, under *transaction
	key         string
}

// sentence says what the history shows of the lost update, for the
// finding of the message whose change it overwrote.
func (w overwrite) sentence() string {
	o, u := w.over, w.under
	tx := func(t *transaction) string {
		if t.tx == 0 {
			return ""
		}
		return fmt.Sprintf("tx%d, ", t.tx)
	}
	underTx := ""
	if u.tx != 0 {
		underTx = fmt.Sprintf(" (tx%d)", u.tx)
	}
	return fmt.Sprintf("a lost update: %s's transaction (%sbegun at step %d, before %s's commit at step %d) wrote %s at step %d and committed at step %d, over %s's change%s; it based its write on a state from before that commit",
		o.l.Key, tx(o), o.begun, u.l.Key, u.commit, w.key, o.writtenAt[w.key], o.commit, u.l.Key, underTx)
}

// overwrites returns the lost updates among the messages of an aggregate,
// in the order of the overwriting commits. It reads the history again, the
// first time it is asked, for the transactions of all aggregates.
func (a *analysis) overwrites(agg string) ([]overwrite, error) {
	if a.txs == nil {
		if err := a.readTransactions(); err != nil {
			return nil, err
		}
	}
	var txs []*transaction
	for _, t := range a.txs {
		if t.l.Msg.Aggregate == agg {
			txs = append(txs, t)
		}
	}
	var out []overwrite
	for _, o := range txs {
		for _, u := range txs {
			if o.l == u.l || !(o.begun < u.commit && u.commit < o.commit) {
				continue
			}
			for _, k := range o.writes {
				if _, ok := u.writtenAt[k]; ok {
					out = append(out, overwrite{over: o, under: u, key: k})
					break
				}
			}
		}
	}
	slices.SortStableFunc(out, func(x, y overwrite) int {
		if d := x.over.commit - y.over.commit; d != 0 {
			return d
		}
		return x.under.commit - y.under.commit
	})
	return out, nil
}

// readTransactions collects the committed transactions of attempts that
// wrote and whose begin the history shows.
func (a *analysis) readTransactions() error {
	type id struct{ attempt, tx int }
	open := map[id]*transaction{}
	a.txs = []*transaction{}
	err := a.src.Each(func(ev *histories.Event) error {
		if ev.Attempt <= 0 {
			return nil
		}
		at := a.attempts.get(ev.Attempt)
		if at == nil {
			return nil
		}
		k := id{ev.Attempt, ev.Tx}
		switch ev.Kind {
		case histories.Begin:
			open[k] = &transaction{l: at.l, tx: ev.Tx, begun: ev.Step, writtenAt: map[string]int{}}
		case histories.Write:
			if t := open[k]; t != nil && ev.Detail != "" {
				if _, ok := t.writtenAt[ev.Detail]; !ok {
					t.writes = append(t.writes, ev.Detail)
				}
				t.writtenAt[ev.Detail] = ev.Step
			}
		case histories.Commit:
			if t := open[k]; t != nil {
				t.commit = ev.Step
				if len(t.writes) > 0 {
					a.txs = append(a.txs, t)
				}
				delete(open, k)
			}
		case histories.Abort:
			delete(open, k)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the history again for its transactions: %w", err)
	}
	return nil
}
