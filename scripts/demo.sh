#!/usr/bin/env bash
# Installs what is missing, builds, starts a private redis-server and runs the demo.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
install_missing
configure_and_build
start_redis

log "demo 1: enqueue and consume through a Redis Streams consumer group"
"$BUILD_DIR/examples/stream-roundtrip" "${1:-5}"

log "demo 2: two worker processes share 20,000 tasks of the queue 'demo'"
workers=()
stop_workers() { for p in "${workers[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait "${workers[@]}" 2>/dev/null || true; workers=(); }
trap 'stop_workers; stop_redis' EXIT
for i in 1 2; do
  SAGAFLOW_LOG=warn "$BUILD_DIR/examples/sagaflow-worker" --queues demo --concurrency 16 &
  workers+=($!)
done
"$BUILD_DIR/examples/sagaflow-producer" --queue demo --name record --count 20000 --payload 0
for _ in $(seq 1 300); do
  done_count=$(redis-cli -u "$SAGAFLOW_REDIS_URL" scard demo:done)
  echo "  completed: $done_count / 20000"
  [ "$done_count" -ge 20000 ] && break
  sleep 0.2
done
stop_workers
runs=$(redis-cli -u "$SAGAFLOW_REDIS_URL" get demo:runs)
dead=$(redis-cli -u "$SAGAFLOW_REDIS_URL" xlen 'sf:{q:demo}:dead')
echo "done: $done_count distinct tasks completed in $runs runs; dead letters: $dead; workers stopped with SIGTERM"
[ "$done_count" -eq 20000 ]
