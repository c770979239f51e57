// Package model holds the vocabulary of oncecheck: messages, states, and the
// contract of a model (the reference business logic a handler must be
// equivalent to when every logical message is processed exactly once), plus
// the built-in models and their workload generators.
package model

import (
	"bytes"
	"encoding/json"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
)

// Message is one copy of a message on the wire, or one output published by a
// handler.
//
// Copies of one logical message share the idempotence Key. A redelivery keeps
// the ID; a re-issue gets a new ID but keeps the Key.
type Message struct {
	// ID identifies this copy on the wire. Downstream consumers deduplicate
	// outputs by ID.
	ID string `json:"id"`
	// Key is the idempotence key: one key, one logical message (one intent).
	Key string `json:"key,omitempty"`
	// Aggregate is the entity the message targets (an order, an account).
	Aggregate string `json:"aggregate,omitempty"`
	// Type names the message kind, for example "AddItem" or "ItemAdded".
	Type string `json:"type"`
	// Payload is the message body as canonical JSON.
	Payload json.RawMessage `json:"payload,omitempty"`
	// Position is the global position of the message in the send order
	// (1-based). Strategies such as sequence numbers rely on it.
	Position int64 `json:"position,omitempty"`
	// Version is the version of the aggregate the sender expects the
	// message to apply to: the number of messages sent to the aggregate
	// before it. Optimistic strategies rely on it.
	Version int64 `json:"version,omitempty"`
	// Causation is, for an output, the idempotence key of the logical
	// message whose processing produced it.
	Causation string `json:"causation,omitempty"`
}

// Output is what a model emits for one message: a type and a payload. The
// harness and adapters turn outputs into Messages with IDs and causation.
type Output struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// String renders an output as Type{payload}, the form used in reports.
func (o Output) String() string {
	if len(o.Payload) == 0 {
		return o.Type
	}
	return o.Type + string(o.Payload)
}

// Output returns the content of a message (type and payload), without its
// identity.
func (m Message) Output() Output { return Output{Type: m.Type, Payload: m.Payload} }

// Outputs is a list of outputs compared as a multiset.
type Outputs []Output

// Sorted returns a sorted copy, the canonical form used for comparisons.
func (os Outputs) Sorted() Outputs {
	c := slices.Clone(os)
	slices.SortFunc(c, func(a, b Output) int {
		if d := strings.Compare(a.Type, b.Type); d != 0 {
			return d
		}
		return bytes.Compare(a.Payload, b.Payload)
	})
	return c
}

// Equal reports whether two output lists are equal as multisets, payloads
// compared as JSON values (SameJSON).
func (os Outputs) Equal(other Outputs) bool {
	if len(os) != len(other) {
		return false
	}
	if len(os) == 1 {
		return os[0].Type == other[0].Type && SameJSON(os[0].Payload, other[0].Payload)
	}
	used := make([]bool, len(other))
	for _, o := range os {
		found := false
		for j, p := range other {
			if !used[j] && o.Type == p.Type && SameJSON(o.Payload, p.Payload) {
				used[j], found = true, true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// String renders the outputs in canonical order, "[]" when empty.
func (os Outputs) String() string {
	parts := make([]string, 0, len(os))
	for _, o := range os.Sorted() {
		parts = append(parts, o.String())
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// State is the durable state of one aggregate as canonical JSON. Canonical
// means that two equal states have equal bytes, so equality and hashing are
// byte operations.
type State json.RawMessage

// Equal reports whether two states are the same JSON value (SameJSON).
func (s State) Equal(other State) bool { return SameJSON(s, other) }

// Hash returns a 64-bit FNV-1a hash of the state's bytes. Equal states of
// one model hash alike: a model writes its states in one form.
func (s State) Hash() uint64 {
	h := fnv.New64a()
	_, _ = h.Write(s)
	return h.Sum64()
}

// String returns the state's JSON text.
func (s State) String() string { return string(s) }

// MarshalJSON embeds the state as JSON.
func (s State) MarshalJSON() ([]byte, error) {
	if len(s) == 0 {
		return []byte("null"), nil
	}
	return s, nil
}

// UnmarshalJSON reads the state, compacting it into canonical form.
func (s *State) UnmarshalJSON(b []byte) error {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return err
	}
	*s = State(buf.Bytes())
	return nil
}

// EncodeState marshals v (a struct, or maps with string keys) into a State.
// encoding/json sorts map keys, so the result is canonical for such values.
func EncodeState(v any) (State, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return State(b), nil
}

// Canonical returns the canonical form of a JSON value: objects with their
// keys sorted, no insignificant space, numbers in plain decimal without
// insignificant zeros (2.0, 2e0 and 20e-1 are all 2; -0 is 0). Two JSON texts
// that mean the same value have the same canonical form, so states and
// payloads written by hand, or by another system, compare equal to the
// model's.
func Canonical(raw []byte) ([]byte, error) {
	if len(raw) == 0 || IsCanonical(raw) {
		return raw, nil
	}
	return reencode(raw)
}

// reencode decodes and encodes a JSON value: encoding/json sorts the keys.
func reencode(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	v = canonNumbers(v)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// canonNumbers rewrites the numbers of a decoded JSON value (json.Number,
// with UseNumber) in their canonical form.
func canonNumbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		return json.Number(canonNumber(string(v)))
	case map[string]any:
		for k, x := range v {
			v[k] = canonNumbers(x)
		}
	case []any:
		for i, x := range v {
			v[i] = canonNumbers(x)
		}
	}
	return v
}

// maxPlainDigits bounds the canonical form of a number: one whose plain
// decimal would be longer (1e400) is kept as written.
const maxPlainDigits = 400

// canonNumber returns a JSON number in plain decimal, without leading or
// trailing zeros that carry no value, and without a sign on zero.
func canonNumber(n string) string {
	neg := strings.HasPrefix(n, "-")
	s := strings.TrimPrefix(n, "-")
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil || e > maxPlainDigits || e < -maxPlainDigits {
			return n
		}
		mant, exp = s[:i], e
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(intPart+frac, "0")
	exp -= len(frac) // value = digits × 10^exp
	trimmed := strings.TrimRight(digits, "0")
	exp += len(digits) - len(trimmed)
	digits = trimmed
	if digits == "" {
		return "0"
	}
	var out string
	switch {
	case exp >= 0:
		if len(digits)+exp > maxPlainDigits {
			return n
		}
		out = digits + strings.Repeat("0", exp)
	case -exp < len(digits):
		out = digits[:len(digits)+exp] + "." + digits[len(digits)+exp:]
	default:
		if -exp > maxPlainDigits {
			return n
		}
		out = "0." + strings.Repeat("0", -exp-len(digits)) + digits
	}
	if neg {
		return "-" + out
	}
	return out
}

// IsCanonical reports whether raw is a valid JSON value already in the
// canonical form of Canonical: no insignificant space, object keys in
// increasing order, no escape sequences in strings (Canonical may rewrite
// those). It does not allocate; on a false answer, compare Canonical forms.
func IsCanonical(raw []byte) bool {
	c := canonScanner{b: raw}
	return c.value() && c.i == len(raw)
}

type canonScanner struct {
	b []byte
	i int
}

func (c *canonScanner) value() bool {
	if c.i >= len(c.b) {
		return false
	}
	switch c.b[c.i] {
	case '{':
		c.i++
		var last []byte
		first := true
		for {
			if more, ok := c.next('}', first); !more {
				return ok
			}
			start := c.i
			if !c.str() {
				return false
			}
			key := c.b[start+1 : c.i-1] // without the quotes: Go orders keys as strings
			if !first && bytes.Compare(last, key) >= 0 {
				return false
			}
			last, first = key, false
			if c.i >= len(c.b) || c.b[c.i] != ':' {
				return false
			}
			c.i++
			if !c.value() {
				return false
			}
		}
	case '[':
		c.i++
		first := true
		for {
			if more, ok := c.next(']', first); !more {
				return ok
			}
			first = false
			if !c.value() {
				return false
			}
		}
	case '"':
		return c.str()
	default:
		start := c.i
		for c.i < len(c.b) && strings.IndexByte("-+.0123456789eEtruefalsn", c.b[c.i]) >= 0 {
			c.i++
		}
		switch tok := string(c.b[start:c.i]); tok {
		case "true", "false", "null":
			return true
		default:
			return isNumber(c.b[start:c.i]) && isPlainNumber(c.b[start:c.i])
		}
	}
}

// isNumber reports whether b is a JSON number:
// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func isNumber(b []byte) bool {
	i := 0
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if digits() == 0 {
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(b)
}

// isPlainNumber reports whether a JSON number is in the canonical form of
// canonNumber: no exponent, no trailing zero after a decimal point, no
// negative zero.
func isPlainNumber(b []byte) bool {
	if bytes.ContainsAny(b, "eE") {
		return false
	}
	if bytes.IndexByte(b, '.') >= 0 && b[len(b)-1] == '0' {
		return false
	}
	return string(b) != "-0"
}

// next moves to the next member of an object or array: more is false at
// its end (ok: the closing byte was there) or at a malformed separator.
func (c *canonScanner) next(closing byte, first bool) (more, ok bool) {
	if c.i >= len(c.b) {
		return false, false
	}
	if c.b[c.i] == closing {
		c.i++
		return false, true
	}
	if !first {
		if c.b[c.i] != ',' {
			return false, false
		}
		c.i++
	}
	return true, true
}

// str scans a string without escape sequences.
func (c *canonScanner) str() bool {
	if c.i >= len(c.b) || c.b[c.i] != '"' {
		return false
	}
	c.i++
	for c.i < len(c.b) {
		switch c.b[c.i] {
		case '\\':
			return false // an escape: Canonical may write it otherwise
		case '"':
			c.i++
			return true
		default:
			if c.b[c.i] < 0x20 {
				return false
			}
			c.i++
		}
	}
	return false
}

// SameJSON reports whether two JSON texts are the same value, ignoring key
// order and insignificant space. Equal bytes answer at once; two canonical
// texts that differ are different; otherwise their canonical forms are
// compared.
func SameJSON(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if IsCanonical(a) && IsCanonical(b) {
		return false
	}
	ca, errA := Canonical(a)
	cb, errB := Canonical(b)
	return errA == nil && errB == nil && bytes.Equal(ca, cb)
}
