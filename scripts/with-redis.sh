#!/usr/bin/env bash
# with-redis.sh CMD [ARGS...]: run CMD with ONCECHECK_REDIS pointing at a
# Redis server that answers.
#
# 1. ONCECHECK_REDIS set: used as is.
# 2. Otherwise a server on 127.0.0.1:6379 is used when it answers.
# 3. Otherwise a throwaway server is started from Debian's redis-server
#    (make test-deps installs it) in a temporary directory, without
#    persistence (as the "redis" user when run as root, or "nobody" without
#    one), and stopped and removed when CMD ends.
set -eu

answers() {
	# $1: host, $2: port
	if command -v redis-cli >/dev/null 2>&1; then
		[ "$(redis-cli -h "$1" -p "$2" ping 2>/dev/null)" = PONG ]
	else
		(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
	fi
}

if [ -n "${ONCECHECK_REDIS:-}" ]; then
	exec "$@"
fi

if [ -z "${ONCECHECK_REDIS_THROWAWAY:-}" ] && answers 127.0.0.1 6379; then
	ONCECHECK_REDIS=127.0.0.1:6379
	export ONCECHECK_REDIS
	exec "$@"
fi

server=$(command -v redis-server || true)
if [ -z "$server" ]; then
	echo "with-redis: no Redis answers on 127.0.0.1:6379 and redis-server is not installed; set ONCECHECK_REDIS or install Debian's redis-server (make test-deps)" >&2
	exit 1
fi

dir=$(mktemp -d /tmp/oncecheck-redis.XXXXXX)
port=${ONCECHECK_REDIS_PORT:-56379}
user=""
if [ "$(id -u)" = 0 ]; then
	user=redis
	id -u "$user" >/dev/null 2>&1 || user=nobody
	chown "$user" "$dir"
fi
as_user() {
	if [ -n "$user" ]; then
		runuser -u "$user" -- "$@"
	else
		"$@"
	fi
}

pid=""
stop() {
	if [ -n "$pid" ]; then
		redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap stop EXIT INT TERM

echo "with-redis: starting a throwaway Redis ($server) on 127.0.0.1:$port in $dir" >&2
as_user "$server" --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" --appendonly no \
	--daemonize no --logfile "$dir/server.log" &
pid=$!
for _ in $(seq 1 50); do
	if answers 127.0.0.1 "$port"; then break; fi
	sleep 0.1
done
if ! answers 127.0.0.1 "$port"; then
	cat "$dir/server.log" >&2 || true
	exit 1
fi

ONCECHECK_REDIS="127.0.0.1:$port"
export ONCECHECK_REDIS
status=0
"$@" || status=$?
exit $status
