package service

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// respValue is one RESP2 or RESP3 value as read from a connection: its
// type byte, its text (simple strings, errors, numbers, bulk and verbatim
// strings), its elements (arrays, sets, pushes; a map's keys and values
// alternate) and where it lies in the bytes of the top-level value it is
// part of.
type respValue struct {
	kind       byte // '+', '-', ':', '$', '*', '_', ',', '#', '!', '=', '(', '%', '~', '>'
	str        []byte
	null       bool
	elems      []respValue
	start, end int // its bytes in the top-level value's raw
}

// text is the value's string, "" for a null or an aggregate.
func (v respValue) text() string { return string(v.str) }

// aggregate reports whether the value holds elements.
func (v respValue) aggregate() bool {
	switch v.kind {
	case '*', '%', '~', '>':
		return !v.null
	}
	return false
}

// respReader reads RESP values, keeping the bytes of the current
// top-level value.
type respReader struct {
	r   *bufio.Reader
	raw []byte
}

// maxRESPLen bounds a length a peer announces, against a corrupt stream.
const maxRESPLen = 512 << 20

// read reads one top-level value and returns it with its raw bytes (valid
// until the next read).
func (rr *respReader) read() (respValue, []byte, error) {
	rr.raw = rr.raw[:0]
	v, err := rr.value(0)
	return v, rr.raw, err
}

func (rr *respReader) line() ([]byte, error) {
	l, err := rr.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		buf := append([]byte(nil), l...)
		for errors.Is(err, bufio.ErrBufferFull) {
			l, err = rr.r.ReadSlice('\n')
			buf = append(buf, l...)
		}
		l = buf
	}
	if err != nil {
		return nil, err
	}
	rr.raw = append(rr.raw, l...)
	return bytes.TrimRight(l, "\r\n"), nil
}

func (rr *respReader) value(depth int) (respValue, error) {
	if depth > 64 {
		return respValue{}, errors.New("resp: values nested too deep")
	}
	start := len(rr.raw)
	l, err := rr.line()
	if err != nil {
		return respValue{}, err
	}
	if len(l) == 0 {
		return respValue{}, errors.New("resp: empty line")
	}
	v := respValue{kind: l[0], start: start}
	rest := l[1:]
	switch v.kind {
	case '+', '-', ':', ',', '#', '(':
		v.str = append([]byte(nil), rest...)
	case '_':
		v.null = true
	case '$', '!', '=':
		n, err := strconv.Atoi(string(rest))
		if err != nil || n > maxRESPLen {
			return v, fmt.Errorf("resp: bad length %q", l)
		}
		if n < 0 {
			v.null = true
			break
		}
		at := len(rr.raw)
		rr.raw = append(rr.raw, make([]byte, n+2)...)
		if _, err := io.ReadFull(rr.r, rr.raw[at:]); err != nil {
			return v, err
		}
		v.str = append([]byte(nil), rr.raw[at:at+n]...)
	case '*', '~', '>', '%', '|':
		n, err := strconv.Atoi(string(rest))
		if err != nil || n > maxRESPLen {
			return v, fmt.Errorf("resp: bad length %q", l)
		}
		if n < 0 {
			v.null = true
			break
		}
		if v.kind == '%' || v.kind == '|' {
			n *= 2
		}
		v.elems = make([]respValue, 0, min(n, 1024))
		for range n {
			e, err := rr.value(depth + 1)
			if err != nil {
				return v, err
			}
			v.elems = append(v.elems, e)
		}
		if v.kind == '|' { // an attribute: the value it annotates follows
			return rr.value(depth)
		}
	default:
		// An inline command ("PING\r\n"), as telnet sends: its words.
		v.kind = '*'
		for _, w := range strings.Fields(string(l)) {
			v.elems = append(v.elems, respValue{kind: '$', str: []byte(w)})
		}
	}
	v.end = len(rr.raw)
	return v, nil
}

// respCommand encodes a command as an array of bulk strings.
func respCommand(args ...string) []byte {
	b := fmt.Appendf(nil, "*%d\r\n", len(args))
	for _, a := range args {
		b = fmt.Appendf(b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b
}

// respError encodes an error reply.
func respError(msg string) []byte { return []byte("-" + msg + "\r\n") }

// respInt encodes an integer reply.
func respInt(n int) []byte { return []byte(":" + strconv.Itoa(n) + "\r\n") }

// respArray encodes an array of already encoded values.
func respArray(elems [][]byte) []byte {
	b := fmt.Appendf(nil, "*%d\r\n", len(elems))
	for _, e := range elems {
		b = append(b, e...)
	}
	return b
}
