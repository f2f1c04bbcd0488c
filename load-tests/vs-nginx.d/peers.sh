# The proxies load-tests/vs-nginx compares (sourced by it), configured to do the same work per
# request; each function writes its peer's configuration under $W/NAME and starts it.
#
#   one route to the upstream, with keep-alive connections to it
#     Seawall, bare Pingora: Pingora's pool;  nginx: upstream { keepalive 32; }, HTTP/1.1,
#     Connection "";  HAProxy: http-reuse always (its default, "safe", would open a connection
#     for the first request of every client connection)
#   a per-client-IP limit that never rejects (100000 r/s, burst 100000)
#     Seawall: [[routes.limits]] key = "client_ip";  nginx: limit_req_zone $binary_remote_addr;
#     HAProxy: a stick-table keyed by source address storing http_req_rate, tracked on every
#     request, denying above 100000 r/s  (bare Pingora: none, it is the floor)
#   the same Content-Security-Policy header (read from Seawall's answer), the origin's removed
#   the forwarding headers Seawall sends (X-Forwarded-For, X-Real-IP, X-Forwarded-Proto and
#     X-Request-Id to the upstream; X-Request-Id on the answer: nginx $request_id, HAProxy a
#     unique-id of uuid())
#   access logs off, or with --access-log on, each to a file: nginx its combined format,
#     HAProxy its httplog (`log stdout`, stdout redirected to the file: one write per line, as
#     nginx's unbuffered access_log), Seawall its JSON log on stdout (redirected). Bare Pingora
#     has no access log.
#   one worker (or thread) each by default; no per-connection request cap
#   TLS (--tls): the same certificate on a second listener of each, HTTP/2 and HTTP/1.1 by ALPN,
#     TLS 1.3 (nginx 1.22 needs it named in ssl_protocols); h2load offers one cipher suite
#     (H2LOAD_TLS in vs-nginx), so that every peer does the same cryptography
#
# Uses from the caller: W, WORKERS, ACCESS_LOG, TLS_CERT/TLS_KEY (empty: no TLS listener),
# CSP, UP_PORT, NGINX, HAPROXY, HELPER; and LT_PIDS from lib.sh. Each start_* takes the
# peer's name, its plain port, its TLS port (or 0), then an optional command prefix (valgrind)
# and records the pid in LT_PIDS[name] and PEER_OUT[name] (its stdout: the access log).

declare -A PEER_OUT=()

# start_seawall NAME BINARY PORT TLS_PORT ADMIN_PORT [PREFIX...]
start_seawall() {
  local name=$1 bin=$2 port=$3 tls_port=$4 admin=$5 d=$W/$1
  shift 5
  # The config in a directory of its own: Seawall watches its config's directory, and an access
  # log written there wakes the watcher on every write (0.7% of the CPU; operations.md).
  mkdir -p "$d/conf"
  cat >"$d/conf/seawall.toml" <<EOF
[server]
listen = ["127.0.0.1:$port"]
admin_listen = "127.0.0.1:$admin"
threads = $WORKERS
csp_file = "$W/csp.toml"
access_log = $( ((ACCESS_LOG)) && echo true || echo false)
grace_period = "1s"
upgrade_sock = "$d/upgrade.sock"
pid_file = "$d/seawall.pid"
EOF
  if ((tls_port)); then
    cat >>"$d/conf/seawall.toml" <<EOF

[[server.tls]]
listen = "127.0.0.1:$tls_port"
cert = "$TLS_CERT"
key = "$TLS_KEY"
EOF
  fi
  cat >>"$d/conf/seawall.toml" <<EOF

[upstreams.app]
servers = ["127.0.0.1:$UP_PORT"]

[[routes]]
name = "all"
path_prefix = "/"
upstream = "app"

  [[routes.limits]]
  name = "per-ip"
  key = "client_ip"
  rate = "100000r/s"
  burst = 100000
  nodelay = true
EOF
  "$bin" check --config "$d/conf/seawall.toml" >"$d/check.log" 2>&1 || { cat "$d/check.log" >&2; return 1; }
  PEER_OUT[$name]=$d/access.log
  "$@" "$bin" run --config "$d/conf/seawall.toml" >"$d/access.log" 2>"$d/seawall.log" &
  LT_PIDS[$name]=$!
}

write_csp() {
  cat >"$W/csp.toml" <<'EOF'
default_policy = "site"
report_path = "/_seawall/csp-report"

[tags.gtm]
approved_by = "security@example.com"
ticket = "SEC-42"
script-src = ["https://www.googletagmanager.com"]
img-src = ["https://www.googletagmanager.com"]
connect-src = ["https://www.googletagmanager.com", "https://www.google.com"]

[policies.site]
mode = "enforce"
upstream_csp = "replace"
tags = ["gtm"]
  [policies.site.directives]
  default-src = ["'self'"]
  script-src = ["'self'"]
  object-src = ["'none'"]
  base-uri = ["'self'"]
EOF
}

# start_nginx NAME PORT TLS_PORT MASTER(on|off) [PREFIX...]: master off = one process doing
# everything (for callgrind, which follows one process).
start_nginx() {
  local name=$1 port=$2 tls_port=$3 master=$4 d=$W/$1 log=off tls=""
  shift 4
  mkdir -p "$d/tmp"
  chmod 755 "$d"
  ((ACCESS_LOG)) && log="$d/access.log combined"
  if ((tls_port)); then
    tls="
        listen 127.0.0.1:$tls_port ssl http2;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate $TLS_CERT;
        ssl_certificate_key $TLS_KEY;"
  fi
  cat >"$d/nginx.conf" <<EOF
worker_processes $WORKERS;
daemon off;
master_process $master;
pid $d/nginx.pid;
error_log $d/error.log warn;
worker_rlimit_nofile 8192;
events { worker_connections 4096; }
http {
    access_log $log;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    keepalive_requests 1000000;

    limit_req_zone \$binary_remote_addr zone=perip:10m rate=100000r/s;

    upstream app {
        server 127.0.0.1:$UP_PORT;
        keepalive 32;
        keepalive_requests 1000000;
    }

    server {
        listen 127.0.0.1:$port;$tls
        location / {
            limit_req zone=perip burst=100000 nodelay;
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Request-Id \$request_id;
            proxy_hide_header Content-Security-Policy;
            proxy_hide_header Content-Security-Policy-Report-Only;
            add_header X-Request-Id \$request_id always;
            add_header Content-Security-Policy "$CSP" always;
        }
    }
}
EOF
  "$NGINX" -t -q -p "$d" -c "$d/nginx.conf" -e "$d/error.log" 2>"$d/t.log" || { cat "$d/t.log" >&2; return 1; }
  PEER_OUT[$name]=$d/access.log
  rm -f "$d/access.log"   # nginx appends; a run's log holds that run's lines, as the others'
  "$@" "$NGINX" -p "$d" -c "$d/nginx.conf" -e "$d/error.log" >"$d/stdout" 2>"$d/stderr" &
  LT_PIDS[$name]=$!
}

# start_haproxy NAME PORT TLS_PORT [PREFIX...]
start_haproxy() {
  local name=$1 port=$2 tls_port=$3 d=$W/$1 glog="" dlog="" tls=""
  shift 3
  mkdir -p "$d"
  if ((ACCESS_LOG)); then
    glog="    log stdout format raw local0"
    dlog="    log global
    option httplog"
  fi
  if ((tls_port)); then
    cat "$TLS_CERT" "$TLS_KEY" >"$d/tls.pem"
    tls="    bind 127.0.0.1:$tls_port ssl crt $d/tls.pem alpn h2,http/1.1"
  fi
  # The CSP goes in double quotes; HAProxy would expand a '%' or '$' in it, so refuse those.
  [[ $CSP != *%* && $CSP != *'$'* && $CSP != *'"'* ]] || { echo "CSP has a character HAProxy would interpret" >&2; return 1; }
  cat >"$d/haproxy.cfg" <<EOF
global
    nbthread $WORKERS
    maxconn 4096
$glog

defaults
    mode http
    timeout connect 5s
    timeout client 75s
    timeout server 60s
    timeout http-keep-alive 75s
$dlog

frontend fe
    bind 127.0.0.1:$port
$tls
    stick-table type ip size 1m expire 60s store http_req_rate(1s)
    http-request track-sc0 src
    http-request deny deny_status 429 if { sc_http_req_rate(0) gt 100000 }
    unique-id-format %[uuid()]
    unique-id-header X-Request-Id
    option forwardfor
    http-request set-header X-Real-IP %[src]
    http-request set-header X-Forwarded-Proto https if { ssl_fc }
    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
    http-response del-header Content-Security-Policy-Report-Only
    http-response set-header Content-Security-Policy "$CSP"
    http-response set-header X-Request-Id %[unique-id]
    default_backend app

backend app
    http-reuse always
    server app 127.0.0.1:$UP_PORT
EOF
  "$HAPROXY" -c -q -f "$d/haproxy.cfg" >"$d/check.log" 2>&1 || { cat "$d/check.log" >&2; return 1; }
  PEER_OUT[$name]=$d/access.log
  "$@" "$HAPROXY" -db -f "$d/haproxy.cfg" >"$d/access.log" 2>"$d/haproxy.log" &
  LT_PIDS[$name]=$!
}

# start_bare NAME PORT TLS_PORT [PREFIX...]
start_bare() {
  local name=$1 port=$2 tls_port=$3 d=$W/$1 tls=()
  shift 3
  mkdir -p "$d"
  ((tls_port)) && tls=(--tls-port "$tls_port" --cert "$TLS_CERT" --key "$TLS_KEY")
  PEER_OUT[$name]=/dev/null
  "$@" "$HELPER" bare-pingora --port "$port" --upstream "127.0.0.1:$UP_PORT" "${tls[@]}" >"$d/stdout" 2>"$d/log" &
  LT_PIDS[$name]=$!
}

# header URL NAME: the value of response header NAME
header() {
  curl -fsS -D - -o /dev/null "$1" | tr -d '\r' |
    awk -v n="$(tr '[:upper:]' '[:lower:]' <<<"$2")" 'BEGIN { FS = ": " } tolower($1) == n { sub(/^[^:]*: /, ""); print; exit }'
}

# check_alike URL NAME: the peer answers text/html with Seawall's CSP and an X-Request-Id.
check_alike() {
  local url=$1 name=$2 got
  got=$(header "$url" content-security-policy)
  [ "$got" = "$CSP" ] || { echo "$name: the CSP headers differ: '$got'" >&2; return 1; }
  [[ $(header "$url" content-type) == text/html* ]] || { echo "$name: not text/html" >&2; return 1; }
  [ -n "$(header "$url" x-request-id)" ] || { echo "$name: no X-Request-Id on the answer" >&2; return 1; }
}

# children PID: the pids of PID's children (nginx's workers).
children() {
  grep -l "^PPid:[[:space:]]*$1\$" /proc/[0-9]*/status 2>/dev/null | cut -d/ -f3
}
