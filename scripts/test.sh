#!/usr/bin/env bash
# Installs what is missing, builds, starts a private redis-server and runs the whole suite.
# SAGAFLOW_SANITIZE=address (ASan+UBSan) or thread (TSan) builds and tests in build-<name>/.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
install_missing
configure_and_build
start_redis
[ "$SANITIZE" = thread ] && export TSAN_OPTIONS="suppressions=$ROOT/tests/tsan.supp ${TSAN_OPTIONS:-}"
log "running the test suite"
# ctest carries on after Ctrl-C (it only counts the interrupted tests as failed). So it runs in a
# process group of its own: Ctrl-C reaches this script, whose exit stops that whole group.
set -m
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)" "$@" &
suite=$!
set +m
at_exit "kill -TERM -- -$suite 2>/dev/null"
wait "$suite"
