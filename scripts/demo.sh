#!/usr/bin/env bash
# Installs what is missing, builds, starts a private redis-server and runs the demo.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
install_missing
configure_and_build
start_redis
log "demo: enqueue and consume through a Redis Streams consumer group"
"$BUILD_DIR/examples/stream-roundtrip" "${1:-5}"
