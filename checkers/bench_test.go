package checkers

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
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
	h := &histories.History{Header: syntheticHeader}
	h.Events = make([]histories.Event, 0, 7*n)
	msgs := make([]*model.Message, n) // one message shared by its events, as the harness does
	message := func(i int) *model.Message {
		if msgs[i] == nil {
			msgs[i] = syntheticMessage(i, aggs)
		}
		return msgs[i]
	}
	syntheticEvents(n, aggs, message, func(ev histories.Event) {
		ev.Step = len(h.Events) + 1
		h.Events = append(h.Events, ev)
	})
	return h
}

var syntheticHeader = histories.Header{Format: histories.Format, Version: histories.Version, Model: "orders"}

// writeSynthetic writes the synthetic history of n messages to a file in
// dir, holding none of it, and returns the file's path.
func writeSynthetic(dir string, n, aggs int) (string, error) {
	path := filepath.Join(dir, fmt.Sprintf("synthetic-%d.jsonl", n))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	err = enc.Encode(syntheticHeader)
	step := 0
	syntheticEvents(n, aggs, func(i int) *model.Message { return syntheticMessage(i, aggs) }, func(ev histories.Event) {
		step++
		ev.Step = step
		if err == nil {
			err = enc.Encode(&ev)
		}
	})
	if err != nil {
		return "", err
	}
	if err := w.Flush(); err != nil {
		return "", err
	}
	return path, f.Close()
}

// syntheticMessage is the synthetic history's logical message i (from 0).
func syntheticMessage(i, aggs int) *model.Message {
	skus := []string{"a", "b", "c"}
	typ, pl := model.AddItem, fmt.Sprintf(`{"sku":%q,"qty":1}`, skus[i%3])
	if i%7 == 6 {
		typ, pl = model.RemoveItem, fmt.Sprintf(`{"sku":%q}`, skus[(i+1)%3])
	}
	return &model.Message{ID: "m" + strconv.Itoa(i+1), Key: "k" + strconv.Itoa(i+1),
		Aggregate: "o" + strconv.Itoa((i/4)%aggs+1), Type: typ, Payload: json.RawMessage(pl), Position: int64(i + 1)}
}

// syntheticEvents generates the synthetic history's events (without their
// steps) and hands each to add; message(i) gives logical message i.
func syntheticEvents(n, aggs int, message func(i int) *model.Message, add func(histories.Event)) {
	m := model.Orders{}
	for i := range n {
		add(histories.Event{Kind: histories.Send, Message: message(i)})
	}
	states := map[string]model.State{}
	finish := func(i int) {
		msg := message(i)
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
	for i := range n {
		if i%10 == 9 {
			crashed++
			add(histories.Event{Kind: histories.Deliver, Attempt: crashed, Message: message(i)})
			add(histories.Event{Kind: histories.Write, Attempt: crashed})
			add(histories.Event{Kind: histories.Crash, Attempt: crashed})
		}
		add(histories.Event{Kind: histories.Deliver, Attempt: i + 1, Message: message(i)})
		if i >= 3 {
			finish(i - 3)
		}
	}
	for i := max(0, n-3); i < n; i++ {
		finish(i)
	}
	for _, agg := range slices.Sorted(maps.Keys(states)) {
		add(histories.Event{Kind: histories.Observe, Aggregate: agg, State: states[agg]})
	}
}

func TestSyntheticHistoriesPass(t *testing.T) {
	for _, n := range []int{1, 5, 1000} {
		h := synthetic(n, 100)
		require.NoError(t, h.Validate())
		res, err := Check(h, model.Orders{}, Options{})
		require.NoError(t, err)
		require.Equal(t, histories.Pass, res.Verdict, "n=%d: %v", n, res.Findings)
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
			pm := porcupineModel(m, false)
			a = nil
			runtime.GC() // the garbage of building the history is not the first side's to pay
			var ours, raw time.Duration
			checkOurs := func() {
				start := time.Now()
				res, err := Check(h, m, Options{Timeout: time.Hour})
				if err != nil || res.Verdict != histories.Pass {
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

// BenchmarkCheckScaling measures how the check's time per logical message
// grows from 10,000 to 1,000,000 messages, the two sizes alternating in one
// benchmark so that the machine's drift weighs on both: an iteration
// checks the 10,000-message history 100 times and one 1,000,000-message
// history (built before its check and dropped after it, so that the small
// checks run in a small heap, as they would alone), each first every
// other time.
func BenchmarkCheckScaling(b *testing.B) {
	const small, large, reps = 10_000, 1_000_000, 100
	m := model.Orders{}
	hs := synthetic(small, 1000)
	var tSmall, tLarge time.Duration
	check := func(h *histories.History) {
		res, err := Check(h, m, Options{Timeout: time.Hour})
		if err != nil || res.Verdict != histories.Pass {
			b.Fatalf("%v %v", err, res.Verdict)
		}
	}
	checkSmall := func() {
		runtime.GC()
		start := time.Now()
		for range reps {
			check(hs)
		}
		tSmall += time.Since(start)
	}
	checkLarge := func() {
		hl := synthetic(large, 1000)
		runtime.GC()
		start := time.Now()
		check(hl)
		tLarge += time.Since(start)
	}
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			checkSmall()
			checkLarge()
		} else {
			checkLarge()
			checkSmall()
		}
	}
	perMsg := func(d time.Duration, n int) float64 { return float64(d.Nanoseconds()) / float64(b.N) / float64(n) }
	b.ReportMetric(perMsg(tSmall, small*reps), "10k-ns/msg")
	b.ReportMetric(perMsg(tLarge, large), "1M-ns/msg")
	b.ReportMetric(perMsg(tLarge, large)/perMsg(tSmall, small*reps), "1M/10k")
}

// BenchmarkCheckPeakMemory checks one history of 1,000,000 messages and
// reports the process's peak resident memory (VmHWM), so run each case
// alone in its process: "file" checks the history as `oncecheck check`
// does, streamed from its file (written beforehand without holding it);
// "in-memory" checks a history the caller holds, and reports beside the
// peak the live heap the history itself takes.
func BenchmarkCheckPeakMemory(b *testing.B) {
	const n = 1_000_000
	b.Run("file", func(b *testing.B) {
		path, err := writeSynthetic(b.TempDir(), n, 1000)
		if err != nil {
			b.Fatal(err)
		}
		f, err := histories.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			res, err := CheckStream(f, model.Orders{}, Options{Timeout: time.Hour})
			if err != nil || res.Verdict != histories.Pass {
				b.Fatalf("%v %v", err, res.Verdict)
			}
		}
		b.ReportMetric(peakMiB(), "MiB-peak")
	})
	b.Run("in-memory", func(b *testing.B) {
		h := synthetic(n, 1000)
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		history := float64(ms.HeapAlloc) / (1 << 20)
		for b.Loop() {
			res, err := Check(h, model.Orders{}, Options{Timeout: time.Hour})
			if err != nil || res.Verdict != histories.Pass {
				b.Fatalf("%v %v", err, res.Verdict)
			}
		}
		b.ReportMetric(peakMiB(), "MiB-peak")
		b.ReportMetric(history, "MiB-history")
	})
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
