# load-tests/vs-nginx --instructions (sourced by it): user-space instructions per request on
# valgrind's callgrind, for each peer, `--passes` times, each time in a fresh process:
#
#   start the peer under callgrind (nginx as one process: master_process off)
#   WARMUP_REQUESTS requests (connections opened, pools filled, lazy statics built)
#   callgrind_control -z          counters to zero: start-up and warm-up not counted
#   REQUESTS requests             `vs_nginx drive` (HTTP/1.1, CONNECTIONS connections, keep-alive
#                                 or --new-connections) or h2load (--tls): a fixed count
#   callgrind_control -d          counters dumped: instructions (Ir) and system calls of exactly
#                                 those requests, over all of the process's threads
#
# Callgrind counts user-space instructions only: the kernel's work for the same system calls is
# not in the figure, so the number of system calls per request is shown beside it (and, by
# libc function, in OUT_DIR/callgrind-syscalls-PEER.txt). Valgrind turns clock_gettime, natively
# a vDSO call, into a system call: those are shown apart, as clock reads. Callgrind
# runs a program one thread at a time and ~50x slower, so timers fire at other points than
# natively; what depends on wall time (idle timers) is a few instructions per request.
# For Seawall and bare Pingora (the last pass's runs; nginx and HAProxy are stripped)
# callgrind_annotate's top functions, inclusive and self, and every function's callers go to
# OUT_DIR/callgrind-PEER-{inclusive,self,callers}.txt, with the dump (kcachegrind reads it).
# Note how callgrind counts a `rep movsb` (glibc's memcpy of more than ~8 KiB on this CPU): one
# instruction per byte, so large copies weigh more here than in cycles (and than in perf's
# counts of earlier measurements).

REQUESTS=${REQUESTS:-20000}
CG=$W/callgrind
mkdir -p "$CG"
# Under callgrind a request takes ~50x longer: generous bounds, each still finite.
DRIVE_DEADLINE=900

# drive_requests NAME N: N requests to peer NAME; fails unless all N were answered with 200.
drive_requests() {
  local name=$1 n=$2 out=$CG/$1.drive
  if ((TLS)); then
    timeout -k 5 "$DRIVE_DEADLINE" h2load "${H2LOAD_TLS[@]}" -n "$n" -c "$CONNECTIONS" -m "$H2_STREAMS" -t 1 \
      "https://127.0.0.1:${TLS_PORT_OF[$name]}/" >"$out" 2>&1 || { cat "$out" >&2; return 1; }
    grep -q "requests: $n total, $n started, $n done, $n succeeded" "$out" || { cat "$out" >&2; return 1; }
  else
    local close=()
    ((NEW_CONNECTIONS)) && close=(--close)
    "$HELPER" drive "127.0.0.1:${PORT_OF[$name]}" --requests "$n" --connections "$CONNECTIONS" \
      --deadline "$DRIVE_DEADLINE" "${close[@]}" >"$out" 2>&1 || { cat "$out" >&2; return 1; }
  fi
}

# callgrind_cmd PID ARG: callgrind_control, bounded in time, quiet unless it fails.
callgrind_cmd() {
  timeout -k 5 120 callgrind_control "$2" "$1" >"$CG/control.out" 2>&1 || { cat "$CG/control.out" >&2; return 1; }
}

# measure NAME PASS: writes "Ir syscalls clock-reads" of REQUESTS requests to $CG/result (and
# the system calls by function to $CG/NAME.PASS.syscalls); leaves the dump
# in $CG. Runs in this shell (not a subshell), so that LT_PIDS knows what to stop on failure.
measure() {
  local name=$1 pass=$2 pid dump
  start_peer "$name" off valgrind --tool=callgrind --collect-systime=yes --compress-strings=no --compress-pos=no \
    --callgrind-out-file="$CG/$name.$pass.%p" --log-file="$CG/$name.$pass.valgrind.log"
  pid=${LT_PIDS[$name]}
  wait_peer "$name" 180 || return 1
  drive_requests "$name" "$WARMUP_REQUESTS" || return 1
  callgrind_cmd "$pid" -z || return 1
  drive_requests "$name" "$REQUESTS" || return 1
  callgrind_cmd "$pid" -d || return 1
  lt_stop "$name"
  dump=$CG/$name.$pass.$pid.1
  [ -s "$dump" ] || { echo "no callgrind dump for $name ($dump)" >&2; return 1; }
  # Ir from "summary:"; system calls from each function's own cost lines (a "calls=" line is
  # followed by the callee's inclusive cost: skipped), by the libc wrapper that made them.
  # Valgrind turns clock_gettime (natively the vDSO, no system call) into a system call: it
  # is counted apart, as clock reads.
  awk -v n="$REQUESTS" -v out="$CG/$name.$pass.syscalls" '
    /^events:/ { for (i = 2; i <= NF; i++) col[$i] = i }
    /^summary:/ { ir = $(col["Ir"]) }
    /^fn=/ { f = substr($0, 4); next }
    /^calls=/ { skip = 1; next }
    /^[0-9]/ { if (skip) { skip = 0; next } c = $(col["sysCount"]); if (c) by[f] += c }
    END {
      for (k in by) { if (k ~ /^(clock_gettime|time_syscall|__gettimeofday_syscall|gettimeofday)/) clock += by[k]; else sys += by[k]
                      printf "%10.2f per request  %s\n", by[k] / n, k | ("sort -rn > " out) }
      close("sort -rn > " out)
      print ir, sys + 0, clock + 0
    }' "$dump" >"$CG/result"
  echo "$dump" >"$CG/$name.last"
}

CONNS="$CONNECTIONS keep-alive connections"
((NEW_CONNECTIONS)) && CONNS="a new connection per request (Connection: close), $CONNECTIONS at a time"
((TLS)) && CONNS="h2load, TLS + HTTP/2, $CONNECTIONS connections x $H2_STREAMS streams"
echo "== vs-nginx --instructions: $(date -u +%FT%TZ), $(valgrind --version), callgrind; per run a fresh process, $WARMUP_REQUESTS requests of warm-up, then $REQUESTS counted ($CONNS); access logs $( ((ACCESS_LOG)) && echo "ON, to files" || echo off); $PASSES passes"
printf '%-13s %5s %16s %14s %14s\n' peer pass "instr/request" "syscalls/req" "clock reads"
RESULTS=$W/instructions.txt
: >"$RESULTS"
for pass in $(seq "$PASSES"); do
  order=("${PEER_LIST[@]}")
  if ((pass % 2 == 0)); then
    for ((i = ${#PEER_LIST[@]} - 1, j = 0; i >= 0; i--, j++)); do order[j]=${PEER_LIST[i]}; done
  fi
  for p in "${order[@]}"; do
    measure "$p" "$pass" || { echo "measuring $p failed" >&2; exit 1; }
    read -r ir sys clock <"$CG/result"
    [[ $ir =~ ^[0-9]+$ ]] || { echo "no instruction count for $p" >&2; exit 1; }
    echo "$p $pass $ir $sys $clock" >>"$RESULTS"
    awk -v t="${DISPLAY[$p]}" -v p="$pass" -v ir="$ir" -v s="$sys" -v c="$clock" -v n="$REQUESTS" \
      'BEGIN { printf "%-13s %5d %16.0f %14.2f %14.2f\n", t, p, ir / n, s / n, c / n }'
    cp "$CG/$p.$pass.syscalls" "$OUT_DIR/callgrind-syscalls-$p.txt"
  done
done

# Per peer: the mean over the passes, the spread between passes, and the ratio to the first.
echo "per request, mean of the passes (spread = (max - min) / mean), ratio to ${DISPLAY[${PEER_LIST[0]}]}:"
names=""
for p in "${PEER_LIST[@]}"; do names+="$p=${DISPLAY[$p]} "; done
awk -v n="$REQUESTS" -v order="${PEER_LIST[*]}" -v names="$names" '
  { s[$1] += $3; c[$1]++; sys[$1] += $4; clk[$1] += $5
    if (!($1 in lo) || $3 < lo[$1]) lo[$1] = $3
    if (!($1 in hi) || $3 > hi[$1]) hi[$1] = $3 }
  END {
    split(names, kv, " "); for (i in kv) { split(kv[i], x, "="); disp[x[1]] = x[2] }
    k = split(order, o, " "); base = s[o[1]] / c[o[1]]
    for (i = 1; i <= k; i++) {
      t = o[i]; m = s[t] / c[t]
      printf "  %-13s %9.0f instructions  (%.2fx)  spread %.2f%%  %6.2f system calls, %5.2f clock reads\n", disp[t], m / n, m / base, (hi[t] - lo[t]) / m * 100, sys[t] / c[t] / n, clk[t] / c[t] / n
    }
  }' "$RESULTS"

for s in bare-pingora seawall seawall-base; do
  [ -f "$CG/$s.last" ] || continue
  # Functions on the stack when the counters were zeroed appear with "calls=0", which
  # callgrind_annotate (3.19) then counts as the caller's own cost (everything lands on the
  # thread's first frame): count those calls as 1 instead (the costs are untouched).
  out=$OUT_DIR/callgrind-$s
  sed 's/^calls=0 /calls=1 /' "$(cat "$CG/$s.last")" >"$out.out"
  callgrind_annotate --inclusive=yes "$out.out" 2>/dev/null | head -100 >"$out-inclusive.txt" || true
  callgrind_annotate --inclusive=no "$out.out" 2>/dev/null | head -100 >"$out-self.txt" || true
  callgrind_annotate --tree=caller "$out.out" 2>/dev/null >"$out-callers.txt" || true
  echo "profile of ${DISPLAY[$s]}: $out-{inclusive,self,callers}.txt (the dump: $out.out)"
done
echo "logs:"
log_summary
