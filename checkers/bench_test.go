package checkers

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/require"

	"github.com/oncecheck/oncecheck/histories"
	"github.com/oncecheck/oncecheck/model"
)

// synthetic builds a correct (exactly-once) history of n logical messages of
// the orders model over aggs aggregates. Messages are handled four at a
// time by four consumers, each attempt overlapping the next three, and
// groups of four consecutive messages target the same aggregate, so up to
// four attempts overlap within a partition. Every tenth message first gets
// an attempt that writes and crashes before its commit.
func synthetic(n, aggs int) *histories.History {
	m := model.Orders{}
	skus := []string{"a", "b", "c"}
	msgs := make([]*model.Message, n)
	for i := range msgs {
		typ, pl := model.AddItem, fmt.Sprintf(`{"sku":%q,"qty":1}`, skus[i%3])
		if i%7 == 6 {
			typ, pl = model.RemoveItem, fmt.Sprintf(`{"sku":%q}`, skus[(i+1)%3])
		}
		msgs[i] = &model.Message{ID: "m" + strconv.Itoa(i+1), Key: "k" + strconv.Itoa(i+1),
			Aggregate: "o" + strconv.Itoa((i/4)%aggs+1), Type: typ, Payload: json.RawMessage(pl), Position: int64(i + 1)}
	}
	h := &histories.History{Header: histories.Header{Format: histories.Format, Version: histories.Version, Model: "orders"}}
	h.Events = make([]histories.Event, 0, 7*n)
	add := func(ev histories.Event) {
		ev.Step = len(h.Events) + 1
		h.Events = append(h.Events, ev)
	}
	for _, msg := range msgs {
		add(histories.Event{Kind: histories.Send, Message: msg})
	}
	states := map[string]model.State{}
	attempt := 0
	finish := func(i int) {
		msg := msgs[i]
		st, ok := states[msg.Aggregate]
		if !ok {
			st = m.Initial(msg.Aggregate)
		}
		next, outs, err := m.Apply(st, *msg)
		if err != nil {
			panic(err)
		}
		states[msg.Aggregate] = next
		add(histories.Event{Kind: histories.Commit, Attempt: i + 1})
		for j, o := range outs {
			add(histories.Event{Kind: histories.Publish, Attempt: i + 1, Message: &model.Message{
				ID: msg.ID + "/" + strconv.Itoa(j), Type: o.Type, Payload: o.Payload, Causation: msg.Key}})
		}
		add(histories.Event{Kind: histories.Done, Attempt: i + 1})
	}
	crashed := n // attempt numbers of crashed first attempts come after n
	for i := range msgs {
		if i%10 == 9 {
			crashed++
			add(histories.Event{Kind: histories.Deliver, Attempt: crashed, Message: msgs[i]})
			add(histories.Event{Kind: histories.Write, Attempt: crashed})
			add(histories.Event{Kind: histories.Crash, Attempt: crashed})
		}
		attempt = i + 1
		add(histories.Event{Kind: histories.Deliver, Attempt: attempt, Message: msgs[i]})
		if i >= 3 {
			finish(i - 3)
		}
	}
	for i := max(0, n-3); i < n; i++ {
		finish(i)
	}
	for agg, st := range states {
		add(histories.Event{Kind: histories.Observe, Aggregate: agg, State: st})
	}
	return h
}

func TestSyntheticHistoriesPass(t *testing.T) {
	for _, n := range []int{1, 5, 1000} {
		h := synthetic(n, 100)
		require.NoError(t, h.Validate())
		res, err := Check(h, model.Orders{}, Options{})
		require.NoError(t, err)
		require.Equal(t, Pass, res.Verdict, "n=%d: %v", n, res.Findings)
	}
}

// BenchmarkCheck measures the exactly-once check on histories of 1,000 to
// 1,000,000 logical messages over 1,000 aggregates (up to four overlapping
// attempts) against raw porcupine on the same operations with the same
// model: the two alternate, iteration by iteration, so that the machine's
// drift weighs on both alike. Metrics: ns per logical message of each, and
// their ratio. (BenchmarkCheckPeakMemory measures the memory.)
func BenchmarkCheck(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			m := model.Orders{}
			h := synthetic(n, 1000)
			a, err := analyze(h, DownstreamDedupByID)
			if err != nil {
				b.Fatal(err)
			}
			ops, err := operations(a, m, nil)
			if err != nil {
				b.Fatal(err)
			}
			pm := porcupineModel(m)
			a = nil
			runtime.GC() // the garbage of building the history is not the first side's to pay
			var ours, raw time.Duration
			checkOurs := func() {
				start := time.Now()
				res, err := Check(h, m, Options{Timeout: time.Hour})
				if err != nil || res.Verdict != Pass {
					b.Fatalf("%v %v", err, res.Verdict)
				}
				ours += time.Since(start)
			}
			checkRaw := func() {
				start := time.Now()
				if porcupine.CheckOperationsTimeout(pm, ops, time.Hour) != porcupine.Ok {
					b.Fatal("porcupine does not find the history linearizable")
				}
				raw += time.Since(start)
			}
			for i := 0; b.Loop(); i++ {
				if i%2 == 0 { // each goes first every other time
					checkOurs()
					checkRaw()
				} else {
					checkRaw()
					checkOurs()
				}
			}
			perMsg := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) / float64(n) }
			b.ReportMetric(perMsg(ours), "ours-ns/msg")
			b.ReportMetric(perMsg(raw), "porcupine-ns/msg")
			b.ReportMetric(float64(ours)/float64(raw), "ours/porcupine")
		})
	}
}

// BenchmarkCheckPeakMemory checks one history of 1,000,000 messages (run
// it alone: the metric is the process's peak resident memory, VmHWM, the
// history included) and reports, beside it, the live heap the history
// itself holds.
func BenchmarkCheckPeakMemory(b *testing.B) {
	h := synthetic(1_000_000, 1000)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	history := float64(ms.HeapAlloc) / (1 << 20)
	for b.Loop() {
		res, err := Check(h, model.Orders{}, Options{Timeout: time.Hour})
		if err != nil || res.Verdict != Pass {
			b.Fatalf("%v %v", err, res.Verdict)
		}
	}
	b.ReportMetric(peakMiB(), "MiB-peak")
	b.ReportMetric(history, "MiB-history")
}

// peakMiB reads the process's peak resident set size (Linux), 0 elsewhere.
func peakMiB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}
