#!/usr/bin/env bash
# Installs what is missing, builds, and runs the demo (scripts/run-demo.sh) with its own
# redis-server. Arguments are passed on: [round trips of demo 1].
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
install_missing
configure_and_build
exec "$ROOT/scripts/run-demo.sh" "$BUILD_DIR" "$@"
