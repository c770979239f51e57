package strategykit

import (
	"slices"
	"strings"
)

// TableSpec declares one table of the key-value Tx that the built-in
// strategies use, for backends that lay it out as a table of its own (the
// pg backend makes it a SQL table whose primary key is the Tx's key, with a
// value column of a real type). A table a handler uses without a
// declaration lives in a generic table of keys and values.
type TableSpec struct {
	// Name is the table's name in Tx calls and in SQL.
	Name string
	// Key is the primary-key column.
	Key string
	// Value is the value column; "" for a table that records keys only
	// (its values are nil).
	Value string
	// Type is the value column's SQL type: "text" (UTF-8 values, the
	// default) or "bigint" (decimal numbers, as PutCounter writes them).
	Type string
	// Doc says what a row means (the table's COMMENT).
	Doc string
}

// Table names of the built-in strategies, beside StateTable and
// OutboxTable.
const (
	// ProcessedTable records the ids (or keys) of processed messages.
	ProcessedTable = "processed"
	// PositionTable keeps, per aggregate, the position of the last message
	// applied (the sequence strategy).
	PositionTable = "position"
	// VersionTable keeps, per aggregate, the number of messages applied
	// (the version strategy).
	VersionTable = "version"
	// ReservationTable keeps, per idempotence key, the outcome reserved for
	// it (the reservation strategy).
	ReservationTable = "reservation"
)

var tables = []TableSpec{
	{Name: StateTable, Key: "aggregate_id", Value: "state", Doc: "the durable state of each aggregate, as the model's canonical JSON"},
	{Name: OutboxTable, Key: "outbox_id", Value: "message", Doc: "outputs stored with the state, waiting for the dispatcher (a message as JSON)"},
	{Name: ProcessedTable, Key: "message_id", Doc: "the ids (or idempotence keys) of processed messages"},
	{Name: PositionTable, Key: "aggregate_id", Value: "position", Type: "bigint", Doc: "the position of the last message applied to each aggregate"},
	{Name: VersionTable, Key: "aggregate_id", Value: "version", Type: "bigint", Doc: "the number of messages applied to each aggregate"},
	{Name: ReservationTable, Key: "idempotency_key", Value: "outcome", Doc: "the outcome reserved for each idempotence key (JSON)"},
}

// Tables returns the declared tables, sorted by name.
func Tables() []TableSpec {
	out := slices.Clone(tables)
	slices.SortFunc(out, func(a, b TableSpec) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// LookupTable returns the declaration of a table, if it has one.
func LookupTable(name string) (TableSpec, bool) {
	for _, t := range tables {
		if t.Name == name {
			return t, true
		}
	}
	return TableSpec{}, false
}
