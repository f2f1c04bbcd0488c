# load-tests/vs-nginx --tls (sourced by it): TLS 1.3 + HTTP/2 to each peer's TLS listener (the
# same self-signed certificate on all), h2load as the client: per round and peer, a warm-up run
# and a measured run of REQUESTS requests over CONNECTIONS connections x H2_STREAMS streams
# (h2load -t 1: one client thread, like the HTTP/1.1 generator). Throughput is h2load's; CPU per
# request is the peer's utime+stime (nginx: master + workers) over the measured run / REQUESTS.
# The order of the peers reverses every other round (ABBA).

REQUESTS=${REQUESTS:-100000}
for p in "${PEER_LIST[@]}"; do start_peer "$p" on; done
for p in "${PEER_LIST[@]}"; do wait_peer "$p"; done

# cpu_ticks PID: utime + stime of PID and its children, in clock ticks.
cpu_ticks() {
  local pid t=0 v
  for pid in "$1" $(children "$1"); do
    v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}

# h2 NAME N OUT: h2load to NAME's TLS port; fails unless all N succeeded over h2.
h2() {
  timeout -k 5 300 h2load "${H2LOAD_TLS[@]}" -n "$2" -c "$CONNECTIONS" -m "$H2_STREAMS" -t 1 \
    "https://127.0.0.1:${TLS_PORT_OF[$1]}/" >"$3" 2>&1 || { cat "$3" >&2; return 1; }
  grep -q "requests: $2 total, $2 started, $2 done, $2 succeeded" "$3" &&
    grep -q "Application protocol: h2" "$3" || { echo "$1: h2load did not succeed over h2:" >&2; cat "$3" >&2; return 1; }
}

echo "== vs-nginx --tls: $(date -u +%FT%TZ), $(nproc) cores; $(h2load --version | head -1); per run $REQUESTS requests over $CONNECTIONS connections x $H2_STREAMS streams (h2load -t 1), after $WARMUP_REQUESTS of warm-up; $WORKERS worker(s) each; access logs $( ((ACCESS_LOG)) && echo "ON, to files" || echo off); $ROUNDS rounds, order alternated"
RESULTS=$W/tls.txt
: >"$RESULTS"
printf '  %-13s %5s %10s %12s  %s\n' peer round "r/s" "CPU us/req" "TLS"
for round in $(seq "$ROUNDS"); do
  order=("${PEER_LIST[@]}")
  if ((round % 2 == 0)); then
    for ((i = ${#PEER_LIST[@]} - 1, j = 0; i >= 0; i--, j++)); do order[j]=${PEER_LIST[i]}; done
  fi
  for p in "${order[@]}"; do
    h2 "$p" "$WARMUP_REQUESTS" "$W/h2load.warmup" || exit 1
    c0=$(cpu_ticks "${LT_PIDS[$p]}")
    h2 "$p" "$REQUESTS" "$W/h2load.out" || exit 1
    c1=$(cpu_ticks "${LT_PIDS[$p]}")
    rps=$(awk '/^finished in/ { gsub(",", ""); print $4; exit }' "$W/h2load.out")
    tls=$(awk -F': ' '/^TLS Protocol|^Cipher/ { printf "%s ", $2 }' "$W/h2load.out")
    us=$(awk -v a="$c0" -v b="$c1" -v n="$REQUESTS" -v hz="$TCK" 'BEGIN { printf "%.1f", (b - a) / hz / n * 1e6 }')
    echo "$p $round $rps $us" >>"$RESULTS"
    printf '  %-13s %5d %10.0f %12s  %s\n' "${DISPLAY[$p]}" "$round" "$rps" "$us" "$tls"
  done
  sleep 0.5
done

echo "medians over the rounds, and ratio to ${DISPLAY[${PEER_LIST[0]}]}:"
for p in "${PEER_LIST[@]}"; do
  rps=$(awk -v p="$p" '$1 == p { print $3 }' "$RESULTS" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
  us=$(awk -v p="$p" '$1 == p { print $4 }' "$RESULTS" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
  echo "$p $rps $us"
done >"$W/tls-medians.txt"
awk -v names="$(for p in "${PEER_LIST[@]}"; do printf '%s=%s ' "$p" "${DISPLAY[$p]}"; done)" '
  BEGIN { split(names, kv, " "); for (i in kv) { split(kv[i], x, "="); disp[x[1]] = x[2] } }
  NR == 1 { br = $2; bu = $3 }
  { printf "  %-13s %9.0f r/s (%.2fx)   CPU %6.1f us per request (%.2fx)\n", disp[$1], $2, $2 / br, $3, $3 / bu }' "$W/tls-medians.txt"
echo "logs:"
log_summary
