#!/usr/bin/env bash
# with-rabbitmq.sh CMD [ARGS...]: run CMD with ONCECHECK_AMQP pointing at a
# RabbitMQ server that answers.
#
# 1. ONCECHECK_AMQP set: used as is.
# 2. Otherwise a server on 127.0.0.1:5672 (guest/guest) is used when it
#    answers.
# 3. Otherwise a throwaway node is started from Debian's rabbitmq-server
#    (make test-deps installs it) in a temporary directory, without
#    plugins, listening on 127.0.0.1 only (as the "rabbitmq" user when run
#    as root, or "nobody" without one), and stopped and removed when CMD
#    ends. Service mode's tests make their own queues and exchange (random
#    names) on whichever server it is, and delete them.
set -eu

answers() {
	# $1: host, $2: port. RabbitMQ opens its AMQP listener last, once the
	# node has booted.
	(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

if [ -n "${ONCECHECK_AMQP:-}" ]; then
	exec "$@"
fi

if [ -z "${ONCECHECK_AMQP_THROWAWAY:-}" ] && answers 127.0.0.1 5672; then
	ONCECHECK_AMQP="amqp://guest:guest@127.0.0.1:5672/"
	export ONCECHECK_AMQP
	exec "$@"
fi

server=""
for s in /usr/lib/rabbitmq/bin/rabbitmq-server "$(command -v rabbitmq-server || true)"; do
	if [ -n "$s" ] && [ -x "$s" ]; then server="$s"; break; fi
done
if [ -z "$server" ]; then
	if [ -n "${CI:-}" ]; then
		echo "with-rabbitmq: no RabbitMQ answers on 127.0.0.1:5672 and rabbitmq-server is not installed; set ONCECHECK_AMQP or install Debian's rabbitmq-server (make test-deps)" >&2
		exit 1
	fi
	echo "with-rabbitmq: no RabbitMQ answers on 127.0.0.1:5672 and rabbitmq-server is not installed: the RabbitMQ tests will be skipped (they fail under \$CI); set ONCECHECK_AMQP or install Debian's rabbitmq-server (make test-deps)" >&2
	exec "$@"
fi
ctl=$(dirname "$server")/rabbitmqctl

dir=$(mktemp -d /tmp/oncecheck-rabbitmq.XXXXXX)
port=${ONCECHECK_AMQP_PORT:-55672}
node="oncecheck$$@localhost"
user=""
if [ "$(id -u)" = 0 ]; then
	user=rabbitmq
	id -u "$user" >/dev/null 2>&1 || user=nobody
fi
mkdir -p "$dir/mnesia" "$dir/log"
cat >"$dir/rabbitmq.conf" <<CONF
listeners.tcp.1 = 127.0.0.1:$port
loopback_users.guest = true
CONF
echo "[]." >"$dir/enabled_plugins"
if [ -n "$user" ]; then chown -R "$user" "$dir"; fi
as_user() {
	if [ -n "$user" ]; then
		runuser -u "$user" -- "$@"
	else
		"$@"
	fi
}
vars=(HOME="$dir" RABBITMQ_NODENAME="$node" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
	RABBITMQ_NODE_PORT="$port" RABBITMQ_DIST_PORT=$((port + 1))
	RABBITMQ_CONFIG_FILE="$dir/rabbitmq" RABBITMQ_MNESIA_BASE="$dir/mnesia"
	RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
	RABBITMQ_PID_FILE="$dir/pid")

pid=""
stop() {
	if [ -n "$pid" ]; then
		as_user env "${vars[@]}" "$ctl" -n "$node" stop >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap stop EXIT INT TERM

echo "with-rabbitmq: starting a throwaway RabbitMQ node ($server) on 127.0.0.1:$port in $dir" >&2
as_user env "${vars[@]}" "$server" >"$dir/server.out" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
	if answers 127.0.0.1 "$port"; then break; fi
	if ! kill -0 "$pid" 2>/dev/null; then break; fi
	sleep 0.2
done
if ! answers 127.0.0.1 "$port"; then
	cat "$dir/server.out" "$dir"/log/*.log >&2 2>/dev/null || true
	exit 1
fi

ONCECHECK_AMQP="amqp://guest:guest@127.0.0.1:$port/"
export ONCECHECK_AMQP
status=0
"$@" || status=$?
exit $status
