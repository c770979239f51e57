package faults

// Kinds that only service mode injects (package service): they strike a
// real process's database connection or a real broker, which the
// simulation does not have. Plans and histories hold them as any other
// kind; ParseKinds does not offer them, ParseKindsOf with ServiceKinds
// does.
const (
	// CutConnection closes a process's database connection, both sides,
	// as the server's reply to statement Index (0-based, BEGIN, COMMIT
	// and ROLLBACK not counted) of a transaction of the At-th delivery's
	// attempt comes back: the server aborts the transaction, the process
	// sees a broken connection.
	CutConnection Kind = "cut-connection"
	// BrokerRestart stops the broker just after the At-th delivery and
	// starts it again on the same storage and address: its clients
	// reconnect, unacknowledged deliveries come back after their ack
	// wait.
	BrokerRestart Kind = "broker-restart"
)

// ServiceKinds are the kinds only service mode injects.
var ServiceKinds = []Kind{CutConnection, BrokerRestart}
