package histories

// Verdict is the outcome of a check.
type Verdict string

// The verdicts.
const (
	Pass         Verdict = "pass"
	Violation    Verdict = "violation"
	Inconclusive Verdict = "inconclusive"
)

// Anomaly names how a history departs from exactly-once (docs/design.md, section 3).
type Anomaly string

// The anomalies.
const (
	Lost         Anomaly = "lost"
	Duplicate    Anomaly = "duplicate"
	Ghost        Anomaly = "ghost"
	Inconsistent Anomaly = "inconsistent"
	OutOfOrder   Anomaly = "out-of-order"
	// RealTime: the effects match an execution in which a message takes
	// effect before another that had ended before it was first delivered.
	RealTime Anomaly = "real-time"
	Stuck    Anomaly = "stuck"
)
