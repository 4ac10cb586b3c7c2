#!/usr/bin/env bash
# `make bench`: every scenario of docs/benchmarks.md against the machine's own limits,
# in one run on one machine. For each scenario: the app through HTTP (wrk), the SQL of
# one operation straight into PostgreSQL (pgbench: the reference; for the reads by key,
# the one statement per request a server without grouping sends), and the HTTP
# floor (GET /health/live, which touches no database), with the composed limit
#   limit = 1 / (k / floor + 1 / reference),   k = HTTP requests per operation.
# Prints the table and writes it into docs/benchmarks.md (the generated section).
#
# Knobs (environment):
#   BENCH_SECS (10)          seconds per measured run (wrk and pgbench alike)
#   BENCH_WARMUP_SECS (2)    unmeasured wrk run before each app scenario
#   BENCH_FLOOR_SECS (5)     the HTTP floor's run, right before each app scenario
#   BENCH_CONNECTIONS (32)   wrk connections = pgbench clients = DB_POOL_SIZE (BENCH_POOL)
#   BENCH_THREADS (2)        wrk threads = pgbench threads
#   BENCH_USERS (10000)      users with a funded wallet (balance, charge, order + pay)
#   BENCH_PRODUCTS (1000)    products (page, detail, order + pay)
#   BENCH_COUPON_USERS (400000)  first-time users for the hot coupon (none repeats)
#   BENCH_PORT (18080)  BENCH_SKIP_BUILD (0)  BENCH_WRITE_DOC (1)  BENCH_CATALOGUE (1)
#   BENCH_MODES (1)     after the table: detail, charge and order + pay again with
#                       DB_PREPARED_STATEMENTS=false, straight and through PgBouncer
set -euo pipefail
cd "$(dirname "$0")/.."

: "${DATABASE_URL:?set DATABASE_URL (make bench provides it)}"
secs="${BENCH_SECS:-10}"
warm="${BENCH_WARMUP_SECS:-2}"
floor_secs="${BENCH_FLOOR_SECS:-5}"
conns="${BENCH_CONNECTIONS:-32}"
threads="${BENCH_THREADS:-2}"
users="${BENCH_USERS:-10000}"
products="${BENCH_PRODUCTS:-1000}"
coupon_users="${BENCH_COUPON_USERS:-400000}"
pool="${BENCH_POOL:-$conns}"
port="${BENCH_PORT:-18080}"
token="bench-token"
bench_db="shop_bench"
bench_url="${DATABASE_URL%/*}/${bench_db}"
admin_url="${DATABASE_URL%/*}/postgres"
base="http://127.0.0.1:${port}"
export BENCH_USERS="$users" BENCH_PRODUCTS="$products" BENCH_THREADS="$threads"

pgbin=$(dirname "$(readlink -f "$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -1)")")
psql_() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
work=$(mktemp -d)
server=""
auth_server=""
sampler=""
bouncer=""
cleanup() {
  if [ -n "$bouncer" ]; then kill "$bouncer" 2>/dev/null || true; wait "$bouncer" 2>/dev/null || true; fi
  if [ -n "$sampler" ]; then kill "$sampler" 2>/dev/null || true; fi
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  if [ -n "$auth_server" ]; then kill "$auth_server" 2>/dev/null || true; wait "$auth_server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# ---- tools ---------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
  echo "== installing wrk (Debian package)"
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq wrk >/dev/null
fi
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  echo "== building (release)"
  cargo build --release --bin shop-server 2>&1 | tail -1
fi

# ---- /proc readings ------------------------------------------------------------------
clk=$(getconf CLK_TCK)
# utime+stime of one process, in clock ticks.
proc_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# CPU of the bench database's backends (the server's pool, pgbench's clients), in clock
# ticks: a sampler lists, every 0.2 s, each backend of ${bench_db} (a child of the postmaster
# whose process title names the database) with its utime+stime; a backend's CPU is its
# last reading minus its reading when sampling started. A backend that exits loses at most
# its last 0.2 s. The WAL writer, checkpointer and autovacuum are not counted.
db_sample() {
  local files
  files=$(grep -l -a " ${bench_db} " /proc/[0-9]*/cmdline 2>/dev/null | sed 's/cmdline$/stat/' || true)
  [ -n "$files" ] || return 0
  # shellcheck disable=SC2086
  { cat $files 2>/dev/null || true; } \
    | awk -v root="$postmaster" '{ pid = $1; sub(/^.*\) /, ""); if ($2 == root) print pid, $12 + $13 }'
}
db_cpu_start() {
  [ -n "$postmaster" ] || return 0
  db_sample >"$work/db.base"
  ( while :; do db_sample; sleep 0.2; done ) >"$work/db.samples" 2>/dev/null &
  sampler=$!
}
db_cpu_stop() {  # prints the ticks used since db_cpu_start
  [ -n "$postmaster" ] || { echo 0; return; }
  kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
  db_sample >>"$work/db.samples"
  awk 'FNR == NR { base[$1] = $2; next } { if ($2 > last[$1]) last[$1] = $2 }
       END { for (p in last) t += last[p] - base[p]; print t + 0 }' "$work/db.base" "$work/db.samples"
}
rss_peak_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
# Resets VmHWM to the current RSS (Linux clear_refs 5), so each scenario has its own peak.
rss_reset() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; }

# ---- database and server -------------------------------------------------------------
echo "== bench database ${bench_db}: fresh, migrated by the server, seeded by SQL"
psql_ "$admin_url" -c "DROP DATABASE IF EXISTS ${bench_db} WITH (FORCE)" -c "CREATE DATABASE ${bench_db}"
# The postmaster: the parent of the checkpointer (a backend of our own exits too soon).
checkpointer=$(psql_ -At "$bench_url" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
postmaster=$(awk '{ sub(/^.*\) /, ""); print $2 }' "/proc/${checkpointer:-0}/stat" 2>/dev/null || true)
[ -r "/proc/${postmaster:-0}/stat" ] || postmaster=""  # a remote database: no DB CPU figures

DATABASE_URL="$bench_url" BIND_ADDR="127.0.0.1:${port}" ADMIN_TOKEN="$token" RUST_LOG=warn \
  DB_POOL_SIZE="$pool" ORDER_PAYMENT_TIMEOUT_SECS=86400 \
  target/release/shop-server >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 300); do curl -sf "$base/health/ready" >/dev/null && break; sleep 0.1; done
curl -sf "$base/health/ready" >/dev/null || { cat "$work/server.log"; echo "server did not start" >&2; exit 1; }
psql_ "$bench_url" -v users="$users" -v all_users=$((users + coupon_users)) -v products="$products" \
  -f scripts/bench/seed.sql >/dev/null

# ---- runners -------------------------------------------------------------------------
declare -A R  # results: R[scenario.field]
rss_max=0

# A VACUUM and a checkpoint right before each measured run (app and reference alike). The
# VACUUM does the cleanup the runs before left (the hot coupon's 150,000 copies, say), which
# autovacuum would otherwise do during the next run, on the same 2 cores: user_coupons and
# the coupon's stripes were autovacuumed in the middle of order + pay, whose runs measured
# 1,830-1,955 ops/s in the bench against 2,700-3,300 with the same binary right after. The
# checkpoint's full-page writes then fall at the start of every run, instead of in whichever
# run a timed or size-triggered checkpoint lands (one such run measured order + pay at 504
# ops/s, against 1,150-1,250 in the runs before and after). Needs a role that may VACUUM
# and CHECKPOINT; skipped where it may not.
checkpoint() {
  psql_ "$bench_url" -c VACUUM >/dev/null 2>&1 || true
  psql_ "$bench_url" -c CHECKPOINT >/dev/null 2>&1 || true
}

# wrk_run SCENARIO LUA PATH [ENV...]: runs wrk with common.lua + LUA; prints its WRK line.
wrk_run() {
  local duration=$1 lua=$2 path=$3
  cat scripts/bench/wrk/common.lua "scripts/bench/wrk/$lua.lua" >"$work/$lua.lua"
  wrk -t "$threads" -c "$conns" -d "${duration}s" --timeout 10s -s "$work/$lua.lua" "$base$path" \
    | awk '/^WRK / { sub(/^WRK /, ""); print }'
}

# floor_for NAME: the HTTP floor measured right before NAME's app run, so that both see
# the same machine (other work on it drifts over a run).
floor_for() {
  local requests duration_us p50_us p99_us p999_us non2xx socket_errors ops
  eval "$(wrk_run "$floor_secs" get /health/live)"
  R[$1.floor]=$(awk -v o="$requests" -v d="$duration_us" 'BEGIN { printf "%.0f", o / (d / 1e6) }')
}

# app NAME K LUA PATH: warm-up, the HTTP floor, then the measured run with CPU and RSS
# around it.
app() {
  local name=$1 k=$2 lua=$3 path=$4 line cpu0 cpu1 db
  if [ "$warm" -gt 0 ]; then wrk_run "$warm" "$lua" "$path" >/dev/null; fi
  [ "$name" = floor ] || floor_for "$name"
  checkpoint
  rss_reset "$server"
  cpu0=$(proc_ticks "$server"); db_cpu_start
  line=$(wrk_run "$secs" "$lua" "$path")
  cpu1=$(proc_ticks "$server"); db=$(db_cpu_stop)
  local requests duration_us p50_us p99_us p999_us non2xx socket_errors ops
  eval "$line"
  [ "$ops" -gt 0 ] || ops=$((requests / k))
  local rss; rss=$(rss_peak_kb "$server"); [ "$rss" -gt "$rss_max" ] && rss_max=$rss
  R[$name.k]=$k
  R[$name.ops]=$(awk -v o="$ops" -v d="$duration_us" 'BEGIN { printf "%.0f", o / (d / 1e6) }')
  R[$name.p50]=$(awk -v v="$p50_us" 'BEGIN { printf "%.2f", v / 1000 }')
  R[$name.p99]=$(awk -v v="$p99_us" 'BEGIN { printf "%.2f", v / 1000 }')
  R[$name.p999]=$(awk -v v="$p999_us" 'BEGIN { printf "%.2f", v / 1000 }')
  R[$name.non2xx]=$((non2xx + socket_errors))
  R[$name.cpu]=$(awk -v t=$((cpu1 - cpu0)) -v c="$clk" -v o="$ops" 'BEGIN { printf "%.3f", t / c / o * 1000 }')
  R[$name.dbcpu]=$(awk -v t="$db" -v c="$clk" -v o="$ops" 'BEGIN { printf "%.3f", t / c / o * 1000 }')
  R[$name.rss]=$((rss / 1024))
  R[$name.requests]=$requests
  printf '%-15s %8s ops/s  p50 %6s ms  p99 %6s ms  p99.9 %6s ms  non-2xx %s  server CPU %s s/1k ops  DB CPU %s s/1k ops  peak RSS %s MB  (floor just before: %s req/s)\n' \
    "$name" "${R[$name.ops]}" "${R[$name.p50]}" "${R[$name.p99]}" "${R[$name.p999]}" "${R[$name.non2xx]}" \
    "${R[$name.cpu]}" "${R[$name.dbcpu]}" "${R[$name.rss]}" "${R[$name.floor]:-}"
}

# ref NAME SCRIPT [MODE]: pgbench of the app's SQL. MODE as the app sends it: `prepared`
# (named statements, prepared once per connection: diesel's query builder and the adapter's
# `statement()`; every statement of the app is sent this way).
ref() {
  local name=$1 script=$2 mode=${3:-prepared} out db
  checkpoint
  db_cpu_start
  out=$("$pgbin/pgbench" -n -M "$mode" -c "$conns" -j "$threads" -T "$secs" \
    -D users="$users" -D products="$products" -D pages=$(( (products + 19) / 20 )) \
    -f "scripts/bench/pgbench/$script.sql" "${ref_url:-$bench_url}" 2>&1) || { printf '%s\n' "$out"; exit 1; }
  db=$(db_cpu_stop)
  local tps failed
  tps=$(printf '%s\n' "$out" | awk '/^tps = / { printf "%.0f", $3 }' | tail -1)
  failed=$(printf '%s\n' "$out" | awk '/^number of failed transactions:/ { print $5 }')
  R[$name.ref]=$tps
  R[$name.refmode]=$mode
  R[$name.reffailed]=${failed:-0}
  R[$name.refdbcpu]=$(awk -v t="$db" -v c="$clk" -v n="$tps" -v s="$secs" \
    'BEGIN { printf "%.3f", t / c / (n * s) * 1000 }')
  printf '%-15s %8s tps pgbench -M %s reference (%s failed)  DB CPU %s s/1k tx\n' \
    "$name" "$tps" "$mode" "${R[$name.reffailed]}" "${R[$name.refdbcpu]}"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u +%Y-%m-%dT%H:%MZ)
echo "== ${secs}s per run, ${conns} connections, ${threads} threads (load average before: ${load_before})"
app floor 1 get /health/live
page_sql=page
[ "$(psql_ -At "$bench_url" -c "SELECT to_regclass('catalogue_stats') IS NOT NULL")" = t ] || page_sql=page_counted
ref page "$page_sql"; app page 1 page "/api/v1/products"
ref detail detail;    app detail 1 detail "/api/v1/products/1"
ref balance balance;  app balance 1 balance "/api/v1/points"

# Balance with end-user authentication on: a second server (AUTH_JWT_SECRET) on the same
# database, every funded user registered as subject bench-<id>, each request carrying its
# user's HS256 token (scripts/bench/tokens.py) and no userId. The reference is balance's:
# a remembered token and a cached subject add no statement.
auth_secret="a-bench-secret-of-at-least-32-bytes"
psql_ "$bench_url" -c \
  "INSERT INTO user_subjects (subject, user_id, created_at) SELECT 'bench-' || g, g, now() FROM generate_series(1, ${users}) g"
python3 scripts/bench/tokens.py "$auth_secret" "$users" >"$work/tokens.txt"
export BENCH_TOKENS_FILE="$work/tokens.txt"
DATABASE_URL="$bench_url" BIND_ADDR="127.0.0.1:$((port + 1))" ADMIN_TOKEN="$token" RUST_LOG=warn \
  DB_POOL_SIZE="$pool" ORDER_PAYMENT_TIMEOUT_SECS=86400 AUTH_JWT_SECRET="$auth_secret" \
  target/release/shop-server >"$work/auth-server.log" 2>&1 &
auth_server=$!
auth_base="http://127.0.0.1:$((port + 1))"
for _ in $(seq 1 300); do curl -sf "$auth_base/health/ready" >/dev/null && break; sleep 0.1; done
curl -sf "$auth_base/health/ready" >/dev/null || { cat "$work/auth-server.log"; echo "the authenticated server did not start" >&2; exit 1; }
for f in ref refmode reffailed refdbcpu; do R[balance_token.$f]=${R[balance.$f]}; done
# A warm-up four times as long: its random picks reach nearly every subject (over 99 %), as
# a running instance has long seen its users' tokens; each token's first request costs one
# full check and one subject lookup more (the steady state is what is measured).
saved_base=$base; saved_server=$server; saved_warm=$warm
base=$auth_base; server=$auth_server; warm=$((warm > 0 ? warm * 4 : 0))
app balance_token 1 balance_token "/api/v1/points"
base=$saved_base; server=$saved_server; warm=$saved_warm
kill "$auth_server" 2>/dev/null || true; wait "$auth_server" 2>/dev/null || true; auth_server=""
ref charge charge; app charge 1 charge "/api/v1/points/charge"

# Hot coupon: one coupon with room for every first-timer; a second one for the warm-up,
# so the measured run's (user, coupon) pairs are all new.
ref coupon coupon_ref
ends=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
new_coupon() {
  curl -sf -X POST "$base/api/v1/admin/coupons" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' \
    -d "{\"name\":\"$1\",\"discountType\":\"FIXED\",\"discountValue\":1000,\"totalQuantity\":$coupon_users,\"endsAt\":\"$ends\"}" \
    | grep -oE '"id":[0-9]+' | head -1 | cut -d: -f2
}
warm_coupon=$(new_coupon bench-warm-up); hot_coupon=$(new_coupon bench-hot)
export BENCH_COUPON_FIRST_USER=$((users + 1)) BENCH_COUPON_USERS="$coupon_users"
export BENCH_COUPON_ID=$warm_coupon
if [ "$warm" -gt 0 ]; then wrk_run "$warm" coupon /api/v1/coupons/issue >/dev/null; fi
saved_warm=$warm; warm=0
export BENCH_COUPON_ID=$hot_coupon
app coupon 1 coupon /api/v1/coupons/issue
warm=$saved_warm
issued=$(psql_ -At "$bench_url" -c "SELECT count(*) FROM user_coupons WHERE coupon_id = $hot_coupon")
remaining=$(curl -sf "$base/api/v1/coupons/$hot_coupon" | grep -oE '"remainingQuantity":[0-9]+' | cut -d: -f2)
coupon_check="issued ${issued} (wrk counted ${R[coupon.requests]} answers), remaining ${remaining} of ${coupon_users}"
if [ $((issued + remaining)) -eq "$coupon_users" ]; then coupon_check+=": issued + remaining = total"
else coupon_check+=": issued + remaining != total (WRONG)"; R[coupon.non2xx]=$((R[coupon.non2xx] + 1)); fi
echo "  hot coupon: $coupon_check"

ref orderpay orderpay; app orderpay 2 orderpay "/api/v1/orders"
# The second reference of order + pay: the same business work on a minimal schema
# (scripts/bench/minimal.sql), judged ≥ 0.6; the app's figures are order + pay's.
psql_ "$bench_url" -v users="$users" -v products="$products" -f scripts/bench/minimal.sql >/dev/null
ref orderpay_min orderpay_minimal
for f in k ops p50 p99 p999 non2xx cpu dbcpu rss requests floor; do R[orderpay_min.$f]=${R[orderpay.$f]}; done

curl -sf -X POST "$base/api/v1/admin/jobs/refresh-best-sellers" -H "Authorization: Bearer $token" >/dev/null
best_items=$(curl -sf "$base/api/v1/products/best" | grep -o '"rank"' | wc -l)
app best 1 get /api/v1/products/best
echo "  best sellers: ${best_items} items in the answer"

# ---- the table -----------------------------------------------------------------------
verdict() { if awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; then echo PASS; else echo MISS; fi; }
table="$work/table.md"
{
  echo "| scenario | k | app ops/s | p50 ms | p99 ms | p99.9 ms | non-2xx | reference tps | HTTP floor req/s | composed limit | app / limit | target | result | server CPU s / 1k ops | DB CPU s / 1k ops (app) | DB CPU s / 1k ops (reference) | peak RSS MB |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
} >"$table"
misses=0
row() {
  local name=$1 label=$2 ops=${R[$1.ops]} k=${R[$1.k]} refv=${R[$1.ref]:-} floor=${R[$1.floor]} limit="—" ratio target result
  if [ -n "$refv" ]; then
    limit=$(awk -v k="$k" -v f="$floor" -v r="$refv" 'BEGIN { printf "%.0f", 1 / (k / f + 1 / r) }')
  fi
  local want
  case $name in
    coupon) ratio=$(awk -v a="$ops" -v r="$refv" 'BEGIN { printf "%.1f× ref", a / r }')
            target="≥ 7× ref, 0 errors"; result=$(verdict "$(awk -v a="$ops" -v r="$refv" 'BEGIN { print a / r }')" 7) ;;
    best)   ratio=$(awk -v a="$ops" -v f="$floor" 'BEGIN { printf "%.2f of floor", a / f }')
            target="≥ 0.9 of floor"; result=$(verdict "$(awk -v a="$ops" -v f="$floor" 'BEGIN { print a / f }')" 0.9) ;;
    *)      ratio=$(awk -v a="$ops" -v l="$limit" 'BEGIN { printf "%.2f", a / l }')
            case $name in page|detail|balance) want=1.0 ;; charge|orderpay) want=0.9 ;; orderpay_min) want=0.6 ;; *) want=0.7 ;; esac
            target="≥ $want of limit"; result=$(verdict "$ratio" "$want") ;;
  esac
  # The tail: p99 at most 20 × p50.
  if awk -v p50="${R[$name.p50]}" -v p99="${R[$name.p99]}" 'BEGIN { exit !(p99 > 20 * p50) }'; then
    result="MISS (p99 > 20 × p50)"
  fi
  target="$target, p99 ≤ 20 × p50"
  [ "${R[$name.non2xx]}" -eq 0 ] || result="MISS (non-2xx)"
  [ "${R[$name.reffailed]:-0}" = 0 ] || result="$result (reference had failures)"
  [ "$result" = PASS ] || misses=$((misses + 1))
  echo "| $label | $k | ${ops} | ${R[$name.p50]} | ${R[$name.p99]} | ${R[$name.p999]} | ${R[$name.non2xx]} | ${refv:-—}$([ "${R[$name.refmode]:-prepared}" = prepared ] || echo " (-M ${R[$name.refmode]})") | $floor | $limit | $ratio | $target | $result | ${R[$name.cpu]} | ${R[$name.dbcpu]} | ${R[$name.refdbcpu]:-—} | ${R[$name.rss]} |" >>"$table"
}
row page "product page"
row detail "product detail"
row balance "balance"
row balance_token "balance, bearer token (auth on)"
row charge "charge"
row coupon "hot coupon"
row orderpay "order + pay"
row orderpay_min "order + pay, against the minimal schema"
row best "best sellers"
rss_mb=$((rss_max / 1024))
rss_result=$([ "$rss_mb" -lt 100 ] && echo PASS || echo MISS)
[ "$rss_result" = PASS ] || misses=$((misses + 1))
echo "| HTTP floor (GET /health/live), first run | 1 | ${R[floor.ops]} | ${R[floor.p50]} | ${R[floor.p99]} | ${R[floor.p999]} | ${R[floor.non2xx]} | | | | | | | ${R[floor.cpu]} | ${R[floor.dbcpu]} | | ${R[floor.rss]} |" >>"$table"

echo
cat "$table"
echo
echo "peak RSS over the run: ${rss_mb} MB (target < 100 MB): ${rss_result}"
echo "targets missed: ${misses}"

# ---- statement modes -----------------------------------------------------------------
# The same scenarios with DB_PREPARED_STATEMENTS=false (every statement unnamed, parsed each
# time), straight to PostgreSQL and through Debian's PgBouncer in transaction mode (pool
# size BENCH_POOL), each beside pgbench of the same SQL sent the same way (-M extended:
# unnamed statements) on the same path. The prepared rows are the table's above.
modes_table=""
if [ "${BENCH_MODES:-1}" = 1 ]; then
  pgbouncer_bin=$(scripts/pgbouncer.sh bin)
  # As root PgBouncer runs as postgres, which must reach its files under the private $work.
  bouncer_dir="$work/pgbouncer"; mkdir -p "$bouncer_dir"; chmod 711 "$work"; chmod 777 "$bouncer_dir"
  bouncer_port=$((port + 3))
  db_hostport=${DATABASE_URL#*://}; db_hostport=${db_hostport#*@}; db_hostport=${db_hostport%%/*}
  cat >"$bouncer_dir/pgbouncer.ini" <<INI
[databases]
* = host=${db_hostport%:*} port=${db_hostport##*:}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${bouncer_port}
unix_socket_dir =
auth_type = trust
auth_file = ${bouncer_dir}/userlist.txt
pool_mode = transaction
max_client_conn = 1000
default_pool_size = ${pool}
logfile = ${bouncer_dir}/pgbouncer.log
INI
  echo '"postgres" ""' >"$bouncer_dir/userlist.txt"
  bouncer_user=(); [ "$(id -u)" -eq 0 ] && bouncer_user=(-u postgres)
  "$pgbouncer_bin" "${bouncer_user[@]}" "$bouncer_dir/pgbouncer.ini" >/dev/null 2>&1 &
  bouncer=$!
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/${bouncer_port}") 2>/dev/null && break; sleep 0.1; done
  (exec 3<>"/dev/tcp/127.0.0.1/${bouncer_port}") 2>/dev/null \
    || { cat "$bouncer_dir/pgbouncer.log" 2>/dev/null; echo "pgbouncer did not start" >&2; exit 1; }
  bouncer_url=${bench_url/$db_hostport/127.0.0.1:$bouncer_port}
  kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; server=""
  modes_table="$work/modes.md"
  {
    echo "| scenario | statements | path | app ops/s | p50 ms | p99 ms | non-2xx | reference tps | composed limit | app / limit | DB CPU s / 1k ops (app) | DB CPU s / 1k ops (reference) |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  } >"$modes_table"
  mode_row() {  # NAME LABEL MODE PATH
    local name=$1 k=${R[$1.k]} floor=${R[$1.floor]} refv=${R[$1.ref]} limit
    limit=$(awk -v k="$k" -v f="$floor" -v r="$refv" 'BEGIN { printf "%.0f", 1 / (k / f + 1 / r) }')
    echo "| $2 | $3 | $4 | ${R[$name.ops]} | ${R[$name.p50]} | ${R[$name.p99]} | ${R[$name.non2xx]} | ${refv} (-M ${R[$name.refmode]}) | ${limit} | $(awk -v a="${R[$name.ops]}" -v l="$limit" 'BEGIN { printf "%.2f", a / l }') | ${R[$name.dbcpu]} | ${R[$name.refdbcpu]} |" >>"$modes_table"
  }
  for scenario in "detail product_detail 1 detail /api/v1/products/1" "charge charge 1 charge /api/v1/points/charge" "orderpay order_+_pay 2 orderpay /api/v1/orders"; do
    read -r sname slabel sk slua spath <<<"$scenario"
    mode_row "$sname" "${slabel//_/ }" named "PostgreSQL"
  done
  for via in direct pgbouncer; do
    url=$bench_url; [ "$via" = pgbouncer ] && url=$bouncer_url
    echo "== DB_PREPARED_STATEMENTS=false, ${via}"
    DATABASE_URL="$url" DATABASE_DIRECT_URL="$bench_url" DB_PREPARED_STATEMENTS=false \
      BIND_ADDR="127.0.0.1:${port}" ADMIN_TOKEN="$token" RUST_LOG=warn \
      DB_POOL_SIZE="$pool" ORDER_PAYMENT_TIMEOUT_SECS=86400 \
      target/release/shop-server >"$work/server-$via.log" 2>&1 &
    server=$!
    for _ in $(seq 1 300); do curl -sf "$base/health/ready" >/dev/null && break; sleep 0.1; done
    curl -sf "$base/health/ready" >/dev/null || { cat "$work/server-$via.log"; echo "the unnamed-statement server did not start" >&2; exit 1; }
    for scenario in "detail product_detail 1 detail /api/v1/products/1" "charge charge 1 charge /api/v1/points/charge" "orderpay order_+_pay 2 orderpay /api/v1/orders"; do
      read -r sname slabel sk slua spath <<<"$scenario"
      ref_url=$url ref "${sname}_$via" "$sname" extended
      app "${sname}_$via" "$sk" "$slua" "$spath"
      mode_row "${sname}_$via" "${slabel//_/ }" unnamed "$([ "$via" = pgbouncer ] && echo "PgBouncer (transaction mode)" || echo PostgreSQL)"
    done
    kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; server=""
  done
  kill "$bouncer" 2>/dev/null || true; wait "$bouncer" 2>/dev/null || true; bouncer=""
  echo; cat "$modes_table"
fi

catalogue=""
if [ "${BENCH_CATALOGUE:-1}" = 1 ] && [ -x scripts/bench-catalogue.sh ]; then
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; server=""; fi
  echo; echo "== scripts/bench-catalogue.sh"
  catalogue=$(BENCH_SKIP_BUILD=1 scripts/bench-catalogue.sh 2>&1) || catalogue+=$'\n(bench-catalogue.sh failed)'
  printf '%s\n' "$catalogue"
fi

# ---- docs/benchmarks.md --------------------------------------------------------------
if [ "${BENCH_WRITE_DOC:-1}" = 1 ]; then
  commit=$(git rev-parse --short HEAD)
  dirty=$(git status --porcelain -- crates migrations Cargo.toml Cargo.lock | wc -l)
  section="$work/section.md"
  {
    echo "### Last run: ${started}, \`make bench\`, HEAD at \`${commit}\` when it ended"
    echo
    echo "The server binary was built $(date -u -r target/release/shop-server +%Y-%m-%dT%H:%MZ) from the working tree$([ "$dirty" -gt 0 ] && echo ", where ${dirty} paths under crates/ and migrations/ differed from HEAD when the run ended (other sessions' work in progress)")."
    echo
    echo "${secs} s per measured run (${warm} s wrk warm-up, then a ${floor_secs} s HTTP floor run, before each app scenario), ${conns} connections, ${threads} threads;"
    echo "\`DB_POOL_SIZE=${pool}\`; ${users} funded users, ${products} products, ${coupon_users} first-time users for the hot coupon."
    echo "Load average before the run: ${load_before}. ops/s = operations per second (order + pay: one order and its payment = 1 operation, 2 HTTP requests)."
    echo
    cat "$table"
    echo
    echo "Peak RSS of the server over the whole run: **${rss_mb} MB** (target < 100 MB): **${rss_result}**."
    echo "Hot coupon check: ${coupon_check}. Best sellers answered ${best_items} items."
    echo "Targets missed in this run: **${misses}**."
    if [ -n "$modes_table" ]; then
      echo
      echo "#### Statement modes (\`DB_PREPARED_STATEMENTS\`, same run)"
      echo
      echo "The named rows are the table's; the unnamed ones ran a server with \`DB_PREPARED_STATEMENTS=false\` straight to PostgreSQL, then through Debian's PgBouncer $("$pgbouncer_bin" --version 2>/dev/null | head -1 | awk '{print $2}') in transaction mode (\`default_pool_size=${pool}\`), each beside pgbench of the same SQL sent unnamed (\`-M extended\`) on the same path. The composed limit uses the HTTP floor measured just before each app run."
      echo
      cat "$modes_table"
    fi
    if [ -n "$catalogue" ]; then
      echo
      echo "#### Catalogue size (\`scripts/bench-catalogue.sh\`, same run)"
      echo
      echo '```'
      printf '%s\n' "$catalogue"
      echo '```'
    fi
  } >"$section"
  python3 - "$section" docs/benchmarks.md <<'PY'
import re, sys
section = open(sys.argv[1]).read()
path = sys.argv[2]
doc = open(path).read()
begin, end = "<!-- make bench: generated section, begin -->", "<!-- make bench: generated section, end -->"
block = f"{begin}\n{section}{end}"
if begin in doc and end in doc:
    doc = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
else:
    doc = doc.rstrip("\n") + "\n\n" + block + "\n"
open(path, "w").write(doc)
PY
  echo "== docs/benchmarks.md: generated section rewritten"
fi
