// Command fnworker is a worker on a PostgreSQL queue table that takes
// its job with a statement of its own (state = 'running'), then finishes
// it inside an SQL function: BEGIN, SELECT finish_job(id), COMMIT. With
// FNWORKER_BATCH set it first tries to delete the job in a batch of two
// statements outside a transaction whose second fails. The write that finishes the job,
// and its output, are the function's, unseen in the statements' tags.
// service's tests run it.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "fnworker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	db, err := pgx.Connect(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		return err
	}
	for {
		took, err := once(ctx, db)
		if err != nil {
			return err
		}
		if !took {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func once(ctx context.Context, db *pgx.Conn) (bool, error) {
	var id string
	err := db.QueryRow(ctx, `UPDATE jobs SET state = 'running' WHERE id = (SELECT id FROM jobs WHERE state = 'new'
		ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id`).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if os.Getenv("FNWORKER_BATCH") != "" {
		// Two statements in one simple query, one implicit transaction:
		// the second fails, and the delete of the first rolls back.
		lit := "'" + strings.ReplaceAll(id, "'", "''") + "'"
		if _, err := db.PgConn().Exec(ctx, "DELETE FROM jobs WHERE id = "+lit+"; SELECT 1/0").ReadAll(); err == nil {
			return true, errors.New("the batch did not fail")
		}
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return true, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it does nothing
	if _, err := tx.Exec(ctx, `SELECT finish_job($1)`, id); err != nil {
		return true, err
	}
	return true, tx.Commit(ctx)
}
