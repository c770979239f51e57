#!/usr/bin/env bash
# with-postgres.sh CMD [ARGS...]: run CMD with ONCECHECK_PG pointing at a
# PostgreSQL server that answers.
#
# 1. ONCECHECK_PG set: used as is.
# 2. Otherwise a server on 127.0.0.1:5432 (trust auth, database "test") is
#    used when it answers.
# 3. Otherwise a throwaway server is started from the local PostgreSQL
#    binaries in a temporary directory (as the "postgres" user when run as
#    root, since PostgreSQL refuses to run as root), and stopped and removed
#    when CMD ends.
set -eu

default_dsn="postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

answers() {
	# $1: host, $2: port
	if command -v pg_isready >/dev/null 2>&1; then
		pg_isready -q -h "$1" -p "$2" -t 3
	else
		(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
	fi
}

if [ -n "${ONCECHECK_PG:-}" ]; then
	exec "$@"
fi

if [ -z "${ONCECHECK_PG_THROWAWAY:-}" ] && answers 127.0.0.1 5432; then
	ONCECHECK_PG="$default_dsn"
	export ONCECHECK_PG
	exec "$@"
fi

bindir=""
for d in /usr/lib/postgresql/*/bin /usr/local/pgsql/bin; do
	if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then bindir="$d"; fi
done
if [ -z "$bindir" ]; then
	echo "with-postgres: no PostgreSQL answers on 127.0.0.1:5432 and no local binaries (initdb, pg_ctl) were found; set ONCECHECK_PG or install PostgreSQL" >&2
	exit 1
fi

dir=$(mktemp -d /tmp/oncecheck-pg.XXXXXX)
port=${ONCECHECK_PG_PORT:-55432}
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}
if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi

stop() {
	as_pg "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap stop EXIT INT TERM

echo "with-postgres: starting a throwaway PostgreSQL ($bindir) on 127.0.0.1:$port in $dir" >&2
as_pg "$bindir/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1 || {
	cat "$dir/initdb.log" >&2
	exit 1
}
as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
	-o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null || {
	cat "$dir/server.log" >&2
	exit 1
}
as_pg "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres test

ONCECHECK_PG="postgres://postgres@127.0.0.1:$port/test?sslmode=disable"
export ONCECHECK_PG
status=0
"$@" || status=$?
exit $status
