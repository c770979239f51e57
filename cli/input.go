package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// errInterrupted ends a command that a signal stopped.
var errInterrupted = errors.New("interrupted")

// interruptible runs fn and returns what it returns, or errInterrupted as
// soon as ctx is done, waiting at most grace more for fn to finish (so
// that a replay drops its schema). fn then goes on, abandoned, holding
// nothing that outlives the process.
func interruptible[T any](ctx context.Context, grace time.Duration, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := fn()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
	}
	var zero T
	if grace > 0 {
		select {
		case <-done:
		case <-time.After(grace):
		}
	}
	return zero, errInterrupted
}

// input is a history file as given on the command line: a regular file is
// read where it is; "-" (standard input), a pipe, a FIFO or a device is
// read once, into a temporary file that close removes, because a history
// is read in several passes.
type input struct {
	name  string // as given, for messages
	path  string // what to open
	spool string // the temporary file, if any
}

func openInput(ctx context.Context, name string) (*input, error) {
	in := &input{name: name, path: name}
	if name != "-" {
		info, err := os.Stat(name)
		if err != nil || info.Mode().IsRegular() {
			return in, nil // a missing file is reported by the reader, in its words
		}
	}
	tmp, err := os.CreateTemp("", "oncecheck-input-*.jsonl")
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", name, err)
	}
	in.path, in.spool = tmp.Name(), tmp.Name()
	_, err = interruptible(ctx, 0, func() (int64, error) {
		var src io.ReadCloser = os.Stdin
		if name != "-" {
			f, err := os.Open(name)
			if err != nil {
				return 0, err
			}
			src = f
		}
		defer func() {
			if src != os.Stdin {
				src.Close()
			}
		}()
		return io.Copy(tmp, src)
	})
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		in.close()
		if errors.Is(err, errInterrupted) {
			return nil, err
		}
		return nil, usagef("read %s: %v", name, err)
	}
	return in, nil
}

// rename puts the name given back in a message about the spooled file.
func (in *input) rename(msg string) string {
	if in.spool == "" {
		return msg
	}
	return strings.ReplaceAll(msg, in.spool, in.name)
}

func (in *input) close() {
	if in != nil && in.spool != "" {
		_ = os.Remove(in.spool)
	}
}
