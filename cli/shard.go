package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"
)

// shard is one of n parts of a campaign (--shard K/N): the zero value is
// the whole campaign.
type shard struct{ k, n int }

func parseShard(s string) (shard, error) {
	if s == "" {
		return shard{}, nil
	}
	var sh shard
	var rest string
	if n, _ := fmt.Sscanf(s, "%d/%d%s", &sh.k, &sh.n, &rest); n < 2 || sh.n < 1 || sh.k < 1 || sh.k > sh.n {
		return shard{}, usagef("--shard: want K/N with 1 <= K <= N, as 2/4, not %q", s)
	}
	return sh, nil
}

func (s shard) String() string {
	if s.n <= 1 {
		return ""
	}
	return fmt.Sprintf("%d/%d", s.k, s.n)
}

// block is the shard's part of runs 0..runs-1: runs lo..hi-1. The blocks
// of shards 1..N follow one another, so that the first violation of the
// first shard that has one is the whole campaign's first.
func (s shard) block(runs int) (lo, hi int) {
	if s.n <= 1 {
		return 0, runs
	}
	return (s.k - 1) * runs / s.n, s.k * runs / s.n
}

// checkReportPath checks, before any work, that a report (--junit, --html)
// can be written at path: not a directory, in a directory that exists.
func checkReportPath(flagName, path string) error {
	if path == "" || path == "-" {
		return nil
	}
	if info, err := os.Stat(path); err == nil && info.IsDir() {
		return usagef("%s: %s is a directory; name a file", flagName, path)
	}
	dir := filepath.Dir(path)
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return usagef("%s: directory %s does not exist", flagName, dir)
	case err != nil:
		return usagef("%s: %v", flagName, err)
	case !info.IsDir():
		return usagef("%s: %s is not a directory", flagName, dir)
	}
	return nil
}

// checkDSN checks, before any work, that a --pg DSN parses; the error
// masks its password.
func checkDSN(dsn string) error {
	if _, err := pgx.ParseConfig(dsn); err != nil {
		return usagef("--pg: not a PostgreSQL DSN (%s): %v", maskDSN(dsn), err)
	}
	return nil
}
