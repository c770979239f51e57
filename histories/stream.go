package histories

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// Stream is a history's events, read in step order as often as a reader
// needs them. A *History holds them in memory; a *File reads them from disk
// on every pass and holds none, so that a history too large to hold can
// still be checked.
type Stream interface {
	// Each calls fn with every event in step order and stops at the
	// first error, which it returns. fn may keep what an event points to
	// (its message, state and texts, which are never overwritten) but not
	// the event itself: a *File decodes every event into the same Event.
	Each(fn func(ev *Event) error) error
	// Validate checks the events as History.Validate does.
	Validate() error
}

// Each calls fn with a pointer to each event of h, in order, and stops at
// fn's first error. It makes a *History a Stream.
func (h *History) Each(fn func(ev *Event) error) error {
	for i := range h.Events {
		if err := fn(&h.Events[i]); err != nil {
			return err
		}
	}
	return nil
}

// ValidateEach checks, in one pass, the events each yields as
// History.Validate checks a history's (errors name the step): a Stream of
// your own can implement Validate with it.
func ValidateEach(each func(fn func(ev *Event) error) error) error {
	var v validator
	return each(func(ev *Event) error {
		if msg := v.check(ev); msg != "" {
			return &SyntaxError{Msg: fmt.Sprintf("step %d: %s", ev.Step, msg)}
		}
		return nil
	})
}

// Reader decodes a history line by line: the header when it is made, then
// one event per call to Next. Each event is checked on its own (known
// fields and kind, steps increasing); Validate-style checks across events
// are the caller's.
type Reader struct {
	// Header is the history's header, read and checked by NewReader.
	Header Header

	sc   *bufio.Scanner
	fast fastDecoder
	name string
	line int // line of the last thing read
	last int // step of the last event
}

// NewReader reads and checks the header of the history r holds. name labels
// errors (a file name); errors are *SyntaxError values naming the line.
func NewReader(r io.Reader, name string) (*Reader, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxLineBytes)
	rd := &Reader{sc: sc, name: name}
	raw, err := rd.nextLine()
	if err == io.EOF {
		return nil, rd.fail(max(rd.line, 1), "empty file: no header")
	}
	if err != nil {
		return nil, err
	}
	if err := strictUnmarshal(raw, &rd.Header); err != nil {
		return nil, rd.fail(rd.line, "header: %v", err)
	}
	if err := checkHeader(&rd.Header); err != nil {
		return nil, rd.fail(rd.line, "header: %v", err)
	}
	if empty := explicitlyEmpty(raw); len(empty) > 0 {
		return nil, rd.fail(rd.line, "header: %q is empty: leave it out for the default", empty[0])
	}
	return rd, nil
}

// Next decodes the next event into ev (all of whose fields it sets). It
// returns io.EOF after the last event.
func (rd *Reader) Next(ev *Event) error {
	raw, err := rd.nextLine()
	if err != nil {
		return err
	}
	*ev = Event{}
	if !rd.fast.decode(raw, ev) {
		*ev = Event{}
		if err := strictUnmarshal(raw, ev); err != nil {
			return rd.fail(rd.line, "event: %v", err)
		}
	}
	if !slices.Contains(knownKinds, ev.Kind) {
		return rd.fail(rd.line, "unknown event kind %q", ev.Kind)
	}
	if ev.Step <= rd.last {
		return rd.fail(rd.line, "event step %d after step %d (steps increase from line to line)", ev.Step, rd.last)
	}
	rd.last = ev.Step
	return nil
}

// Line returns the line of the event Next read last.
func (rd *Reader) Line() int { return rd.line }

// nextLine returns the next line that is not blank, io.EOF at the end.
func (rd *Reader) nextLine() ([]byte, error) {
	for rd.sc.Scan() {
		rd.line++
		if raw := bytes.TrimSpace(rd.sc.Bytes()); len(raw) > 0 {
			return raw, nil
		}
	}
	if err := rd.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, rd.fail(rd.line+1, "line longer than %d bytes", MaxLineBytes)
		}
		return nil, fmt.Errorf("%s: read: %w", rd.name, err)
	}
	return nil, io.EOF
}

func (rd *Reader) fail(line int, format string, args ...any) error {
	return &SyntaxError{File: rd.name, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// File is a history file read as a Stream: Open reads its header, and each
// pass over its events reads the file again, holding one event at a time.
// Checking a file this way takes the memory of the check alone, not that of
// the history as well.
type File struct {
	// Path is the file's path.
	Path string
	// Header is the history's header.
	Header Header

	events int // events of the last complete pass
}

// Open opens a history file and reads its header. Errors are
// *SyntaxError values naming the line, or the file system's (wrapped).
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rd, err := NewReader(f, path)
	if err != nil {
		return nil, err
	}
	return &File{Path: path, Header: rd.Header}, nil
}

// Each reads the file's events in order and calls fn with each, stopping
// at the first error: fn's, or a *SyntaxError for a line that is no event.
// Every event is decoded into the same Event, each into a new message,
// state and texts: fn may keep those, not the event.
func (f *File) Each(fn func(ev *Event) error) error {
	var ev Event
	return f.each(func(ev *Event, _ int) error { return fn(ev) }, &ev)
}

// Validate checks the file's events as History.Validate does (errors
// name the line), in a pass of its own.
func (f *File) Validate() error {
	var v validator
	var ev Event
	return f.each(func(ev *Event, line int) error {
		if msg := v.check(ev); msg != "" {
			return &SyntaxError{File: f.Path, Line: line, Msg: msg}
		}
		return nil
	}, &ev)
}

// Len returns the number of events the last complete pass over the file
// read, 0 before one.
func (f *File) Len() int { return f.events }

// each reads the events, decoding each into ev.
func (f *File) each(fn func(ev *Event, line int) error, ev *Event) error {
	file, err := os.Open(f.Path)
	if err != nil {
		return err
	}
	defer file.Close()
	rd, err := NewReader(file, f.Path)
	if err != nil {
		return err
	}
	n := 0
	for {
		if err := rd.Next(ev); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		n++
		if err := fn(ev, rd.Line()); err != nil {
			return err
		}
	}
	f.events = n
	return nil
}
