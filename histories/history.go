// Package histories defines the record of a run: a header (what was run and
// with which fault plan) followed by the events that happened, one per line
// (JSON Lines). A run's history is checked as recorded, saved atomically
// when it failed (or when every history is kept), and can be read back,
// re-checked and replayed. The format also owns the verdicts and anomaly
// names a check gives.
package histories

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/oncecheck/oncecheck/faults"
	"github.com/oncecheck/oncecheck/model"
)

// Format is the value of the header's "format" field.
const Format = "oncecheck-history"

// Version is the history format version written by this build. Readers accept
// any 1.x version.
const Version = "1.3"

// MaxLineBytes bounds one line of a history file.
const MaxLineBytes = 16 << 20

// Header is the first line of a history.
type Header struct {
	Format     string `json:"format"`
	Version    string `json:"version"`
	Tool       string `json:"tool"`
	Seed       uint64 `json:"seed"`
	Model      string `json:"model"`
	Strategy   string `json:"strategy"`
	Backend    string `json:"backend"`
	Downstream string `json:"downstream,omitempty"`
	// Faults are the fault kinds the plan was generated from (informative).
	Faults   []faults.Kind  `json:"faults,omitempty"`
	Workload model.Workload `json:"workload"`
	Plan     faults.Plan    `json:"plan"`
	// FreeRunning says the consumers ran truly in parallel: replaying the
	// plan gives another interleaving (format 1.1; absent means false).
	FreeRunning bool `json:"free_running,omitempty"`
	// ReadsPreempt says every read was a scheduling point too, where a
	// concurrent fault may preempt a task (format 1.2; absent means false,
	// as in every 1.1 history): a replay must schedule the same way.
	ReadsPreempt bool `json:"reads_preempt,omitempty"`
	// Isolation is the transaction isolation level of the run's store
	// ("read-committed", "repeatable-read" or "serializable"; format 1.3,
	// where a write that meets a row lock waits for it). Histories before
	// 1.3 have none: they ran at repeatable read, and a write that met a
	// lock failed at once (see Before13).
	Isolation string `json:"isolation,omitempty"`
	// Cache is the cache backend the handlers' Env.Cache ran on ("mem" or
	// "redis"; format 1.3, absent means "mem").
	Cache string `json:"cache,omitempty"`
	// Broker is the broker the consumers read from: "queue" (per-message
	// acks and requeues) or "log" (a partitioned log, offset commits and
	// a consumer group); format 1.3, absent means "queue", as in every
	// history before it (see BrokerName).
	Broker string `json:"broker,omitempty"`
	// Verdict and Anomalies record what the run that saved the history
	// concluded. They are informative: `check` recomputes them.
	Verdict   Verdict   `json:"verdict,omitempty"`
	Anomalies []Anomaly `json:"anomalies,omitempty"`
}

// Kind is the kind of an event.
type Kind string

// The event kinds.
const (
	Send      Kind = "send"     // the sender puts a copy on the wire
	Deliver   Kind = "deliver"  // the broker hands a copy to a consumer: an attempt begins
	Begin     Kind = "begin"    // a transaction opens
	Write     Kind = "write"    // a transaction writes
	Commit    Kind = "commit"   // a transaction commits
	Abort     Kind = "abort"    // a transaction rolls back or dies with its process
	Publish   Kind = "publish"  // the broker accepts an output
	Ack       Kind = "ack"      // a consumer acks its copy
	AckLost   Kind = "ack-lost" // the broker did not get the ack (fault): the copy stays
	Nack      Kind = "nack"     // a consumer gives the copy back
	Done      Kind = "done"     // the handler returned: the attempt ends
	Crash     Kind = "crash"    // a process dies (fault): its attempt ends
	Restart   Kind = "restart"  // a process is rebuilt from its factory
	Dispatch  Kind = "dispatch" // a dispatcher pass begins
	Drain     Kind = "drain"    // faults stop; the run drains
	Observe   Kind = "observe"  // the final state of an aggregate, read after the drain
	Undrained Kind = "stuck"    // the run did not drain within its bound
	Requeue   Kind = "requeue"  // the broker puts a copy back or duplicates it (fault)
	Refused   Kind = "refused"  // the broker refuses an ack or a publish (fault)
	Switch    Kind = "switch"   // the scheduler preempts a process (fault)
	Wait      Kind = "wait"     // a transaction waits for a row lock another holds
	Wake      Kind = "wake"     // a waiting transaction may go on (the lock was released, or it is a deadlock victim)
	CacheCmd  Kind = "cache"    // a handler's command to the cache beside the store (format 1.3)
)

var knownKinds = []Kind{Send, Deliver, Begin, Write, Commit, Abort, Publish, Ack, AckLost, Nack, Done, Crash, Restart, Dispatch, Drain, Observe, Undrained, Requeue, Refused, Switch, Wait, Wake, CacheCmd}

// Event is one thing that happened in a run.
type Event struct {
	// Step numbers events in the order they happened: from 1, increasing
	// (oncecheck writes 1, 2, 3, ...; a hand-edited history may have gaps).
	Step int  `json:"step"`
	Kind Kind `json:"kind"`
	// Process is the process the event happened in ("consumer-1",
	// "dispatcher-1", "sender", "broker").
	Process string `json:"process,omitempty"`
	// Attempt numbers deliveries from 1; events of a handler carry the
	// attempt they belong to.
	Attempt int `json:"attempt,omitempty"`
	// Pass numbers dispatcher passes from 1.
	Pass int `json:"pass,omitempty"`
	// Tx numbers transactions from 1.
	Tx int `json:"tx,omitempty"`
	// Message is the copy sent or delivered, or the output published.
	Message *model.Message `json:"message,omitempty"`
	// Point is the crash point of a crash.
	Point string `json:"point,omitempty"`
	// Aggregate and State are the observed final state (observe).
	Aggregate string      `json:"aggregate,omitempty"`
	State     model.State `json:"state,omitempty"`
	// Detail is free text for people (what a write touched, why a nack).
	Detail string `json:"detail,omitempty"`
	// Fault names the fault kind that caused this event, if one did.
	Fault string `json:"fault,omitempty"`
}

// InjectedFaults counts the events caused by each fault kind: the faults
// that took effect, as opposed to those the plan held.
func (h *History) InjectedFaults() map[string]int {
	c := map[string]int{}
	for _, ev := range h.Events {
		if ev.Fault != "" {
			c[ev.Fault]++
		}
	}
	return c
}

// History is a header and its events.
type History struct {
	Header Header
	Events []Event

	// Where the history was read from, for error messages: the file name
	// and the line of each event.
	name  string
	lines []int
}

// Encode writes the history as JSON Lines.
func (h *History) Encode(w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(h.Header); err != nil {
		return fmt.Errorf("encode header: %w", err)
	}
	for i := range h.Events {
		if err := enc.Encode(&h.Events[i]); err != nil {
			return fmt.Errorf("encode event %d: %w", i+1, err)
		}
	}
	return bw.Flush()
}

// Hash returns a hex SHA-256 of the encoded events (not the header), used to
// compare runs for determinism.
func (h *History) Hash() string {
	sum := sha256.New()
	enc := json.NewEncoder(sum)
	for i := range h.Events {
		_ = enc.Encode(&h.Events[i])
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// CanonicalHash is Hash with the crash points blanked out: two runs that
// crashed at different points with nothing happening in between (after the
// last write, before the commit) have the same canonical hash, and since
// runs are deterministic, the same future. It writes the fields directly
// (no JSON), as it runs once per schedule in the exhaustive mode.
func (h *History) CanonicalHash() string {
	sum := sha256.New()
	var buf []byte
	str := func(s string) {
		buf = strconv.AppendInt(buf, int64(len(s)), 10)
		buf = append(buf, ':')
		buf = append(buf, s...)
	}
	num := func(n int64) {
		buf = strconv.AppendInt(buf, n, 10)
		buf = append(buf, ',')
	}
	for i := range h.Events {
		ev := &h.Events[i]
		buf = buf[:0]
		str(string(ev.Kind))
		str(ev.Process)
		num(int64(ev.Attempt))
		num(int64(ev.Pass))
		num(int64(ev.Tx))
		if ev.Kind != Crash {
			str(ev.Point)
		}
		str(ev.Aggregate)
		str(string(ev.State))
		str(ev.Detail)
		str(ev.Fault)
		if m := ev.Message; m != nil {
			str(m.ID)
			str(m.Key)
			str(m.Aggregate)
			str(m.Type)
			str(string(m.Payload))
			num(m.Position)
			num(m.Version)
			str(m.Causation)
		}
		buf = append(buf, '\n')
		_, _ = sum.Write(buf)
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// FirstDifference returns the first step at which two event lists differ,
// or 0 if they are identical.
func FirstDifference(a, b []Event) int {
	ha, hb := &History{}, &History{}
	for i := 0; i < max(len(a), len(b)); i++ {
		if i >= len(a) || i >= len(b) {
			return i + 1
		}
		ha.Events, hb.Events = a[i:i+1], b[i:i+1]
		if ha.Hash() != hb.Hash() {
			return i + 1
		}
	}
	return 0
}

// SyntaxError is a problem at a given line of a history file.
type SyntaxError struct {
	File string
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string {
	if e.Line == 0 {
		return e.Msg
	}
	if e.File == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Decode reads a history. name labels errors (a file name); errors are
// *SyntaxError values naming the line.
func Decode(r io.Reader, name string) (*History, error) {
	rd, err := NewReader(r, name)
	if err != nil {
		return nil, err
	}
	h := &History{Header: rd.Header, name: name}
	for {
		var ev Event
		if err := rd.Next(&ev); err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
		h.Events = append(h.Events, ev)
		h.lines = append(h.lines, rd.Line())
	}
	if err := h.Validate(); err != nil {
		return nil, err
	}
	return h, nil
}

func strictUnmarshal(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func checkHeader(h *Header) error {
	if h.Format != Format {
		return fmt.Errorf("format is %q, want %q", h.Format, Format)
	}
	major, _, ok := strings.Cut(h.Version, ".")
	if !ok {
		return fmt.Errorf("version %q is not MAJOR.MINOR", h.Version)
	}
	n, err := strconv.Atoi(major)
	if err != nil {
		return fmt.Errorf("version %q is not MAJOR.MINOR", h.Version)
	}
	if n > 1 {
		return fmt.Errorf("format version %s is newer than this build reads (1.x); upgrade oncecheck", h.Version)
	}
	if h.Model == "" {
		return errors.New(`"model" is missing`)
	}
	switch h.Isolation {
	case "", "read-committed", "repeatable-read", "serializable":
	default:
		return fmt.Errorf(`"isolation" is %q, want "read-committed", "repeatable-read" or "serializable"`, h.Isolation)
	}
	switch h.Broker {
	case "", "queue", "log":
	default:
		return fmt.Errorf(`"broker" is %q, want "queue" or "log" (or no field, for "queue")`, h.Broker)
	}
	if h.Downstream != "" && h.Downstream != "dedup-by-id" && h.Downstream != "none" {
		return fmt.Errorf(`"downstream" is %q, want "dedup-by-id" or "none" (or no field, for "dedup-by-id")`, h.Downstream)
	}
	return h.Plan.Validate()
}

// explicitlyEmpty returns the fields of a header line that are present
// with an empty string, where absence means a default: a typo, refused
// rather than read as the default.
func explicitlyEmpty(raw []byte) []string {
	var present struct {
		Downstream *string `json:"downstream"`
		Isolation  *string `json:"isolation"`
		Broker     *string `json:"broker"`
	}
	if json.Unmarshal(raw, &present) != nil {
		return nil // the strict decoding says what is wrong
	}
	var empty []string
	if present.Downstream != nil && *present.Downstream == "" {
		empty = append(empty, "downstream")
	}
	if present.Isolation != nil && *present.Isolation == "" {
		empty = append(empty, "isolation")
	}
	if present.Broker != nil && *present.Broker == "" {
		empty = append(empty, "broker")
	}
	return empty
}

// Load reads a history file.
func Load(path string) (*History, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Decode(f, path)
}

// Save writes the history atomically into dir (created if needed) under
// name, mode 0644: a temporary file (".tmp-NAME-RANDOM", which no glob
// of histories matches) is written, synced and renamed, so a reader never
// sees half a history. It returns the final path.
func Save(h *History, dir, name string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create results directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-"+name+"-*")
	if err != nil {
		return "", fmt.Errorf("create temporary history: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	// CreateTemp's 0600 would hide the history from a CI's other users.
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return "", fmt.Errorf("create temporary history: %w", err)
	}
	if err := h.Encode(tmp); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("sync history: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("close history: %w", err)
	}
	final := filepath.Join(dir, name)
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", fmt.Errorf("save history: %w", err)
	}
	return final, nil
}

// Before13 reports whether the history ran before format 1.3, when a write
// that met a row lock failed at once with a conflict instead of waiting, a
// repeatable-read snapshot was taken at the transaction's begin, and an
// expiring lease expired as its copy was delivered: a replay must run the
// same way.
func (h Header) Before13() bool {
	major, minor, _ := strings.Cut(h.Version, ".")
	m, _ := strconv.Atoi(minor)
	return major == "1" && m < 3
}

// BrokerName is the header's broker, "queue" when it names none.
func (h Header) BrokerName() string {
	if h.Broker == "" {
		return "queue"
	}
	return h.Broker
}

// IsolationLevel is the header's isolation level, with the default of its
// format: "repeatable-read" before 1.3, "read-committed" from 1.3.
func (h Header) IsolationLevel() string {
	switch {
	case h.Isolation != "":
		return h.Isolation
	case h.Before13():
		return "repeatable-read"
	}
	return "read-committed"
}
