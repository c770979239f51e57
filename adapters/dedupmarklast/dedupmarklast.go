// Package dedupmarklast records the processed id in a transaction of its
// own AFTER the work: check the id; "apply, save state; commit"; publish
// (ids derived from the message id); "insert processed id; commit"; ack.
//
// A crash, publish failure or conflict after the work's commit and before
// the mark's commit leaves the work done and the id unmarked: the redelivered
// copy is applied again: duplicate. Two attempts at one id that overlap (a
// redelivery while the first attempt runs) can both pass the check before
// either marks: duplicate too. Re-issues are applied again.
//
// What the harness adds to the prediction: competing consumers alone do not
// break it. Each copy is delivered once, so no two attempts at one id ever
// overlap, and the state's row lock keeps two different messages from
// losing each other's update. It takes a redelivery during the window (a
// lease that expires while the first attempt runs, and another consumer
// takes the copy) for the race to show, at every isolation level.
package dedupmarklast

import (
	"github.com/oncecheck/oncecheck/adapters"
	"github.com/oncecheck/oncecheck/adapters/strategykit"
	"github.com/oncecheck/oncecheck/model"
)

// Name is the strategy's name.
const Name = "dedup-mark-last"

// ProcessedTable holds the ids of processed messages.
const ProcessedTable = strategykit.ProcessedTable

// Strategy returns the strategy, for a catalogue or Verify.
func Strategy() adapters.Strategy {
	return adapters.Strategy{
		Name:       Name,
		Summary:    "processed id recorded in its own transaction after the work",
		NewHandler: func() adapters.Handler { return handler{} },
	}
}

type handler struct{ strategykit.StateObserver }

func (handler) Handle(env adapters.Env, msg model.Message) error {
	work, err := env.Begin()
	if err != nil {
		return err
	}
	defer work.Rollback()
	if seen, err := strategykit.SkipIfSeen(env, work, ProcessedTable, msg.ID); seen || err != nil {
		return err
	}
	outs, err := strategykit.Apply(work, env.Model(), msg)
	if err != nil {
		return err
	}
	if err := work.Commit(); err != nil {
		return err
	}
	if err := env.Publish(strategykit.DerivedMessages(outs, msg)...); err != nil {
		return err
	}

	mark, err := env.Begin()
	if err != nil {
		return err
	}
	defer mark.Rollback()
	if err := mark.Put(ProcessedTable, msg.ID, nil); err != nil {
		return err
	}
	if err := mark.Commit(); err != nil {
		return err
	}
	return env.Ack()
}
