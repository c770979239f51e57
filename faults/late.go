package faults

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// DefaultMaxDelay bounds the delay of a late fault unless a campaign says
// otherwise: a copy may come back up to a day late (a consumer down
// overnight, a dead-letter queue replayed the next morning).
const DefaultMaxDelay = 24 * time.Hour

// LateMargin is how far before or past a declared window a late copy
// arrives: far more than the run's own time (a millisecond per event), so
// that "just past" is past however long the run took to get there.
const LateMargin = time.Second

// LateDelays returns the delays a generated late fault draws from, in
// increasing order: just before and just past each window that maxDelay
// allows (a window plus LateMargin at most maxDelay), and maxDelay itself.
// maxDelay 0 means DefaultMaxDelay. An adapter whose windows are all longer
// than maxDelay never sees a copy past them: a time to live longer than
// any redelivery delay is safe.
func LateDelays(windows []time.Duration, maxDelay time.Duration) []time.Duration {
	if maxDelay <= 0 {
		maxDelay = DefaultMaxDelay
	}
	out := []time.Duration{maxDelay}
	for _, w := range windows {
		if w <= 0 || w+LateMargin > maxDelay {
			continue
		}
		if w > LateMargin {
			out = append(out, w-LateMargin)
		}
		out = append(out, w+LateMargin)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Duration is a time.Duration that a history writes as text ("1h0m1s"),
// and reads as text or as integer nanoseconds.
type Duration time.Duration

// String renders the duration as time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as text.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads text ("90s") or integer nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration: want text such as \"90s\" or integer nanoseconds, not %s", b)
	}
	*d = Duration(n)
	return nil
}
