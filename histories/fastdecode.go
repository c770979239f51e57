package histories

import (
	"encoding/json"
	"strconv"

	"github.com/oncecheck/oncecheck/model"
)

// fastDecoder decodes an event line in the compact form oncecheck writes,
// several times faster than encoding/json and with one allocation per
// string it keeps. It takes only the plain cases: no whitespace, text of
// printable ASCII without escapes, integers without exponent, each known
// field at most once, no null. On anything else it
// gives up and encoding/json decodes the line, so what a history means
// never depends on which of the two read it (FuzzFastDecoder holds the
// fast decoder to encoding/json's results on whatever it takes).
//
// Repeated short texts (kinds, processes, types, aggregates, crash
// points) are interned: a history names a few of each millions of times.
type fastDecoder struct {
	b      []byte
	i      int
	intern map[string]string
}

// internLimit bounds the texts a fastDecoder interns.
const internLimit = 1 << 14

// decode decodes line into ev, which must be zero, and reports whether it
// did; when it did not, ev is to be reset and decoded again.
func (d *fastDecoder) decode(line []byte, ev *Event) bool {
	d.b, d.i = line, 0
	return d.object(eventFields[:], func(field int) (ok bool) {
		switch field {
		case 0:
			return d.int(&ev.Step)
		case 1:
			var kind string
			kind, ok = d.text(true)
			ev.Kind = Kind(kind)
		case 2:
			ev.Process, ok = d.text(true)
		case 3:
			return d.int(&ev.Attempt)
		case 4:
			return d.int(&ev.Pass)
		case 5:
			return d.int(&ev.Tx)
		case 6:
			ev.Message, ok = d.message()
		case 7:
			ev.Point, ok = d.text(true)
		case 8:
			ev.Aggregate, ok = d.text(true)
		case 9:
			ev.Detail, ok = d.text(false)
		case 10:
			ev.Fault, ok = d.text(true)
		case 11:
			// Without whitespace, the value is already in the compact
			// form model.State's decoder makes of it.
			var raw json.RawMessage
			raw, ok = d.raw()
			ev.State = model.State(raw)
		}
		return ok
	}) && d.i == len(d.b)
}

// The JSON names of the fields of an Event and of a model.Message.
var (
	eventFields   = [...]string{"step", "kind", "process", "attempt", "pass", "tx", "message", "point", "aggregate", "detail", "fault", "state"}
	messageFields = [...]string{"id", "key", "aggregate", "type", "payload", "position", "version", "causation"}
)

// message decodes a message object.
func (d *fastDecoder) message() (*model.Message, bool) {
	m := &model.Message{}
	return m, d.object(messageFields[:], func(field int) (ok bool) {
		switch field {
		case 0:
			m.ID, ok = d.text(false)
		case 1:
			m.Key, ok = d.text(false)
		case 2:
			m.Aggregate, ok = d.text(true)
		case 3:
			m.Type, ok = d.text(true)
		case 4:
			m.Payload, ok = d.raw()
		case 5:
			return d.int64(&m.Position)
		case 6:
			return d.int64(&m.Version)
		case 7:
			m.Causation, ok = d.text(false)
		}
		return ok
	})
}

// object scans an object whose keys are among fields, each at most once,
// and has value scan the value of fields[i]. A key not in fields (one
// encoding/json is to judge) gives up.
func (d *fastDecoder) object(fields []string, value func(field int) bool) bool {
	if !d.eat('{') {
		return false
	}
	var seen uint32
	next := 0
	for first := true; ; first = false {
		if d.eat('}') {
			return true
		}
		if !first && !d.eat(',') {
			return false
		}
		key, ok := d.key()
		if !ok {
			return false
		}
		// Keys come in the order of the fields (as encoding/json writes
		// them): the search starts after the last one found.
		field := -1
		for j := range fields {
			if i := (next + j) % len(fields); string(key) == fields[i] {
				field, next = i, i+1
				break
			}
		}
		if field < 0 || seen&(1<<field) != 0 || !value(field) {
			return false
		}
		seen |= 1 << field
	}
}

func (d *fastDecoder) eat(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// plain scans a string of printable ASCII without escapes and returns its
// bytes.
func (d *fastDecoder) plain() ([]byte, bool) {
	if !d.eat('"') {
		return nil, false
	}
	start := d.i
	for ; d.i < len(d.b); d.i++ {
		switch c := d.b[d.i]; {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			return s, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return nil, false
		}
	}
	return nil, false
}

// key scans an object key and its colon.
func (d *fastDecoder) key() ([]byte, bool) {
	b, ok := d.plain()
	return b, ok && d.eat(':')
}

// text scans a string value, interned when intern is set.
func (d *fastDecoder) text(intern bool) (string, bool) {
	b, ok := d.plain()
	if !ok {
		return "", false
	}
	if !intern || len(b) > 64 {
		return string(b), true
	}
	if s, ok := d.intern[string(b)]; ok {
		return s, true
	}
	s := string(b)
	if d.intern == nil {
		d.intern = map[string]string{}
	}
	if len(d.intern) < internLimit {
		d.intern[s] = s
	}
	return s, true
}

// int64 scans an integer that fits: -?(0|[1-9][0-9]*).
func (d *fastDecoder) int64(v *int64) bool {
	start := d.i
	d.eat('-')
	digits := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	n := d.i - digits
	if n == 0 || n > 19 || (n > 1 && d.b[digits] == '0') {
		return false
	}
	if d.i < len(d.b) && (d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		return false
	}
	x, err := strconv.ParseInt(string(d.b[start:d.i]), 10, 64)
	*v = x
	return err == nil
}

func (d *fastDecoder) int(v *int) bool {
	var x int64
	if !d.int64(&x) || int64(int(x)) != x {
		return false
	}
	*v = int(x)
	return true
}

// raw scans a JSON value without whitespace outside its strings (escapes
// in them are kept as written) and returns a copy of its bytes, as
// json.RawMessage does.
func (d *fastDecoder) raw() (json.RawMessage, bool) {
	start, depth := d.i, 0
	for d.i < len(d.b) {
		switch c := d.b[d.i]; c {
		case '"':
			d.i++
			for d.i < len(d.b) && d.b[d.i] != '"' {
				if d.b[d.i] == '\\' {
					d.i++
				}
				d.i++
			}
			if d.i >= len(d.b) {
				return nil, false
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return d.rawEnd(start)
			}
			depth--
		case ',':
			if depth == 0 {
				return d.rawEnd(start)
			}
		case ' ', '\t', '\n', '\r':
			return nil, false
		}
		d.i++
	}
	return nil, false
}

func (d *fastDecoder) rawEnd(start int) (json.RawMessage, bool) {
	v := d.b[start:d.i]
	if len(v) == 0 || string(v) == "null" || !json.Valid(v) {
		return nil, false
	}
	return append(json.RawMessage(nil), v...), true
}
