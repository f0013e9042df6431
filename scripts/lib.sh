# Shared by demo.sh, run-demo.sh and test.sh: install what is missing, build, and run a private
# redis-server on a free loopback port (never the system service). Whatever a script starts or
# changes is undone when it exits, however it exits (error, Ctrl-C, SIGTERM).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SANITIZE=${SAGAFLOW_SANITIZE:-}
BUILD_DIR=${SAGAFLOW_BUILD_DIR:-$ROOT/build${SANITIZE:+-$SANITIZE}}
PACKAGES=(g++ cmake ninja-build ccache libboost1.81-dev libboost-json1.81-dev liburing-dev libssl-dev
          libgtest-dev redis-server redis-tools openssl
          # the RESP fuzzer (tests/fuzz): clang++ and its libFuzzer runtime
          clang-14 libclang-rt-14-dev)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# at_exit <command>: run at exit, the last one registered first.
EXIT_COMMANDS=()
at_exit() { EXIT_COMMANDS=("$1" "${EXIT_COMMANDS[@]}"); }
run_exit_commands() {
  local c
  for c in "${EXIT_COMMANDS[@]}"; do eval "$c" || true; done
  EXIT_COMMANDS=()
}
trap run_exit_commands EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

install_missing() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  # Installing redis-server would start the system service; we run our own, so forbid that, for
  # as long as apt runs (a policy left behind would keep every service from starting).
  local policy=/usr/sbin/policy-rc.d ours=""
  if [ ! -e "$policy" ]; then
    ours=$policy
    at_exit "$sudo rm -f $policy"
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
  fi
  # Lock::Timeout: on a fresh machine apt's daily jobs may hold the lock for a while.
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -qq)
  $sudo "${apt[@]}" update
  $sudo "${apt[@]}" install --no-install-recommends "${missing[@]}"
  [ -z "$ours" ] || $sudo rm -f "$ours"
}

configure_and_build() {
  local args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DSAGAFLOW_SANITIZE="$SANITIZE")
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    command -v ninja >/dev/null && args+=(-G Ninja)
  fi
  log "configuring and building in $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" "${args[@]}" "$@" >/dev/null
  cmake --build "$BUILD_DIR" -j "$(nproc)"
}

REDIS_PID=""
REDIS_DIR=""
stop_redis() {
  if [ -n "$REDIS_PID" ]; then
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=""
  fi
  [ -n "$REDIS_DIR" ] && rm -rf "$REDIS_DIR"
  REDIS_DIR=""
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_redis() {
  REDIS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sagaflow-redis.XXXXXX")
  at_exit stop_redis
  local attempt port i
  for attempt in $(seq 1 20); do
    port=$((30000 + RANDOM % 30000))
    port_in_use "$port" && continue
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
      --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log" &
    REDIS_PID=$!
    for i in $(seq 1 100); do
      if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
        export SAGAFLOW_REDIS_URL="redis://127.0.0.1:$port"
        log "redis-server $(redis-server --version | awk '{print $3}') on 127.0.0.1:$port (pid $REDIS_PID)"
        return 0
      fi
      kill -0 "$REDIS_PID" 2>/dev/null || break
      sleep 0.05
    done
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=""
  done
  echo "could not start redis-server; see $REDIS_DIR/redis.log" >&2
  return 1
}
