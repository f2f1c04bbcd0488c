# Shared by load-tests/* (sourced, not run): starting and stopping what a scenario runs, the
# packages it needs, waiting for readiness. Everything listens on 127.0.0.1 only.

source scripts/lib.sh

# name -> pid of every process the scenario started (and only those).
declare -A LT_PIDS=()
LT_KEEP=${LT_KEEP:-0}   # the scenario's --keep sets it before sourcing this file
LT_WORK=

# lt_workdir NAME: a fresh work directory, removed on exit unless --keep.
lt_workdir() {
  LT_WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  chmod 711 "$LT_WORK"   # nginx workers (user nobody) must reach their temp directories
}

# lt_stop NAME: stop one process we started. Seawall gets SIGINT (its immediate stop), anything
# else SIGTERM; whatever is still alive 5 s later gets SIGKILL. Prints how it went to stderr.
lt_stop() {
  local name=$1 pid=${LT_PIDS[$1]:-} i sig=TERM
  [ -n "$pid" ] || return 0
  [[ $name == seawall* ]] && sig=INT
  kill "-$sig" "$pid" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$name (pid $pid) still running 5 s after SIG$sig: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  unset "LT_PIDS[$name]"
}

lt_cleanup() {
  local name
  for name in "${!LT_PIDS[@]}"; do lt_stop "$name"; done
  if [ -n "$LT_WORK" ]; then
    if ((LT_KEEP)); then echo "work directory kept: $LT_WORK" >&2; else rm -rf "$LT_WORK"; fi
  fi
}
trap lt_cleanup EXIT
trap 'exit 130' INT TERM

# lt_wait_http URL NAME [SECONDS]: wait (10 s at most, or SECONDS) until URL answers 2xx, while
# NAME's process lives. Curl may be asked to skip certificate checks with LT_CURL_INSECURE=1.
lt_wait_http() {
  local url=$1 name=$2 i k=()
  ((${LT_CURL_INSECURE:-0})) && k=(-k)
  for i in $(seq $((${3:-10} * 10))); do
    curl "${k[@]}" -fs -o /dev/null "$url" 2>/dev/null && return 0
    kill -0 "${LT_PIDS[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "$name did not answer $url" >&2
  return 1
}

# lt_install PACKAGE...: apt-get install (as ensure_packages in scripts/lib.sh does).
lt_install() {
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "installing: $*" >&2
  "${sudo[@]}" apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null
}

# lt_run_bounded NAME SECONDS OUT ERR CMD...: run CMD (a load generator) with stdout to OUT and
# stderr to ERR, killed if it runs longer than SECONDS (SIGTERM, SIGKILL 5 s later); returns its
# exit status (124: it ran out of time). In the background and waited for, so that Ctrl-C
# reaches this script's trap at once.
lt_run_bounded() {
  local name=$1 secs=$2 out=$3 err=$4 rc=0
  shift 4
  timeout -k 5 "$secs" "$@" >"$out" 2>"$err" &
  LT_PIDS[$name]=$!
  wait "${LT_PIDS[$name]}" || rc=$?
  unset "LT_PIDS[$name]"
  ((rc != 124)) || echo "$name ran out of its time bound ($secs s) and was stopped" >&2
  return "$rc"
}

# The charts' text needs a font (examples/shared/chart.rs); without one they are drawn without
# text, so a failed install is only a warning.
lt_ensure_font() {
  [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] && return 0
  lt_install fonts-dejavu-core ||
    echo "warning: fonts-dejavu-core could not be installed: charts will have no text" >&2
}

# lt_build EXAMPLE: the release Seawall binary and the scenario's helper example, in cargo's
# target directory (CARGO_TARGET_DIR if set). LT_SEAWALL=/path/to/seawall runs another build (an
# older commit's, say) for an A/B; Seawall is then not built.
lt_build() {
  local bin=(--bin seawall) target=${CARGO_TARGET_DIR:-$PWD/target}
  [ -z "${LT_SEAWALL:-}" ] || bin=()
  echo "building ${bin:+seawall and }the load-test helpers (release; the first build takes minutes)..." >&2
  cargo build --release --quiet "${bin[@]}" --example "$1"
  SEAWALL=${LT_SEAWALL:-$target/release/seawall}
  HELPER=$target/release/examples/$1
}

TCK=$(getconf CLK_TCK)
