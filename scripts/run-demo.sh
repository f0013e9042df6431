#!/usr/bin/env bash
# The demo itself, against programs already built in <build-dir>: starts its own redis-server,
# runs it and stops everything it started. scripts/demo.sh installs and builds first; the test
# suite runs this script (demo.end_to_end) so that the demo cannot break silently.
#   scripts/run-demo.sh <build-dir> [round trips]     SAGAFLOW_DEMO_TASKS: tasks of demo 2 (20000),
#                                                     SAGAFLOW_DEMO_SAGAS: order sagas of demo 3 (300)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ $# -ge 1 ] && [ -d "$1" ] || { echo "usage: $0 <build-dir> [round trips]" >&2; exit 2; }
BUILD_DIR=$(cd "$1" && pwd)
tasks=${SAGAFLOW_DEMO_TASKS:-20000}
sagas=${SAGAFLOW_DEMO_SAGAS:-300}

workers=()
running() { local state; read -r _ _ state _ 2>/dev/null <"/proc/$1/stat" && [ "$state" != Z ]; }
any_worker_running() { local p; for p in "${workers[@]}"; do running "$p" && return 0; done; return 1; }
# SIGTERM, then at most 30 s for a graceful stop (SIGKILL after that: a failure). Only the
# workers' pids (worker and saga demo programs) are waited for: a bare `wait` would also wait for redis-server, forever.
stop_workers() {
  local p rc=0
  [ ${#workers[@]} -eq 0 ] && return 0
  kill -TERM "${workers[@]}" 2>/dev/null || true
  for _ in $(seq 300); do any_worker_running || break; sleep 0.1; done
  for p in "${workers[@]}"; do
    if running "$p"; then echo "worker $p ignored SIGTERM for 30 s: killed" >&2; kill -KILL "$p" 2>/dev/null || true; fi
    wait "$p" || rc=$?
  done
  workers=()
  return "$rc"
}
start_redis
at_exit stop_workers

log "demo 1: enqueue and consume through a Redis Streams consumer group"
"$BUILD_DIR/examples/stream-roundtrip" "${2:-5}"

log "demo 2: two worker processes share $tasks tasks of the queue 'demo'"
for _ in 1 2; do
  SAGAFLOW_LOG=warn "$BUILD_DIR/examples/sagaflow-worker" --queues demo --concurrency 16 &
  workers+=($!)
done
"$BUILD_DIR/examples/sagaflow-producer" --queue demo --name record --count "$tasks" --payload 0
done_count=0
deadline=$((SECONDS + 120))
while [ "$SECONDS" -lt "$deadline" ]; do
  done_count=$(redis-cli -u "$SAGAFLOW_REDIS_URL" scard demo:done)
  echo "  completed: $done_count / $tasks"
  [ "$done_count" -ge "$tasks" ] && break
  sleep 0.5
done
stopped=0
stop_workers || stopped=$?
runs=$(redis-cli -u "$SAGAFLOW_REDIS_URL" get demo:runs)
dead=$(redis-cli -u "$SAGAFLOW_REDIS_URL" xlen 'sf:{q:demo}:dead')
echo "done: $done_count distinct tasks completed in $runs runs; dead letters: $dead; workers stopped with SIGTERM (status $stopped)"
if [ "$done_count" -ne "$tasks" ] || [ "$dead" -ne 0 ] || [ "$stopped" -ne 0 ]; then
  echo "the demo failed: every task must complete, none dead, and both workers exit 0 on SIGTERM" >&2
  exit 1
fi

log "demo 3: an order saga across three services (inventory, payments, shipping), $sagas orders"
# Failures chosen by the order id: 20% of cards declined and 5% of shipments impossible (the
# saga compensates what was done), and first attempts failing now and then (retried).
orders=$BUILD_DIR/examples/orders
# Expected failures (declined cards are dead letters) would fill the screen: errors only.
export SAGAFLOW_LOG=error
"$orders/orders-inventory" --transient-rate 0.1 &
workers+=($!)
"$orders/orders-payments" --fail-rate 0.2 --transient-rate 0.05 &
workers+=($!)
"$orders/orders-shipping" --fail-rate 0.05 &
workers+=($!)
"$orders/orders-orchestrator" --lease-ms 5000 &
workers+=($!)
"$orders/orders-client" start --count "$sagas"
waited=0
"$orders/orders-client" wait --timeout-s 60 --interval-ms 500 || waited=$?
"$orders/orders-client" summary
# Preferably one whose last step failed: two steps undone in reverse order.
example=$("$orders/orders-client" list --status compensated --failed-step ship --limit 1)
[ -n "$example" ] || example=$("$orders/orders-client" list --status compensated --limit 1)
if [ -n "$example" ]; then
  echo "the journal of a compensated saga:"
  "$orders/orders-client" history "$example"
fi
stopped=0
stop_workers || stopped=$?
echo "saga demo: services and orchestrator stopped with SIGTERM (status $stopped)"
if [ "$waited" -ne 0 ] || [ "$stopped" -ne 0 ] || [ -z "$example" ]; then
  echo "the saga demo failed: every saga must complete or compensate within 60 s, some must compensate, and every program exit 0 on SIGTERM" >&2
  exit 1
fi
