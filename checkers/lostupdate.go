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
	l      *logical
	tx     int     // its number (0 where the history gives none)
	begun  int     // step of its begin event
	commit int     // step of its commit
	writes []write // in the order of their keys' first writes
}

// write is a key a transaction wrote ("table/key", the event's detail)
// and the step of its last write.
type write struct {
	key  string
	step int
}

// wrote returns the step of the transaction's last write of key, and
// whether it wrote it.
func (t *transaction) wrote(key string) (int, bool) {
	for _, w := range t.writes {
		if w.key == key {
			return w.step, true
		}
	}
	return 0, false
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
	overTx, underTx := "", ""
	if o.tx != 0 {
		overTx = fmt.Sprintf("tx%d, ", o.tx)
	}
	if u.tx != 0 {
		underTx = fmt.Sprintf(" (tx%d)", u.tx)
	}
	step, _ := o.wrote(w.key)
	return fmt.Sprintf("a lost update: %s's transaction (%sbegun at step %d, before %s's commit at step %d) wrote %s at step %d and committed at step %d, over %s's change%s; it based its write on a state from before that commit",
		o.l.Key, overTx, o.begun, u.l.Key, u.commit, w.key, step, o.commit, u.l.Key, underTx)
}

// overwrites returns the lost updates among the messages of an aggregate,
// in the order of the overwriting commits, then of the overwritten ones. It reads the history again, the
// first time it is asked, for the transactions of all aggregates.
func (a *analysis) overwrites(agg string) ([]overwrite, error) {
	if a.txs == nil {
		if err := a.readTransactions(); err != nil {
			return nil, err
		}
	}
	var txs []*transaction // in commit order, as read
	for _, t := range a.txs {
		if t.l.Msg.Aggregate == agg {
			txs = append(txs, t)
		}
	}
	var out []overwrite
	for _, o := range txs {
		// The commits while o was open.
		from, _ := slices.BinarySearchFunc(txs, o.begun+1, func(t *transaction, step int) int { return t.commit - step })
		for _, u := range txs[from:] {
			if u.commit >= o.commit {
				break
			}
			if u.l == o.l {
				continue
			}
			for _, w := range o.writes {
				if _, ok := u.wrote(w.key); ok {
					out = append(out, overwrite{over: o, under: u, key: w.key})
					break
				}
			}
		}
	}
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
			open[k] = &transaction{l: at.l, tx: ev.Tx, begun: ev.Step}
		case histories.Write:
			t := open[k]
			if t == nil || ev.Detail == "" {
				return nil
			}
			if i := slices.IndexFunc(t.writes, func(w write) bool { return w.key == ev.Detail }); i >= 0 {
				t.writes[i].step = ev.Step
			} else {
				t.writes = append(t.writes, write{ev.Detail, ev.Step})
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
