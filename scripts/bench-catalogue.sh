#!/usr/bin/env bash
# Catalogue cost against catalogue size: GET /api/v1/products page 1 with 1,000 products,
# then page 1, a keyset page deep in the catalogue (?after=999000) and, for comparison, a
# deep numbered page (?page=50000, an OFFSET) with 1,000,000 products. Target: page 1 and
# the deep keyset page at 1,000,000 within 1.5x of page 1 at 1,000.
#
# A scratch database (dropped at the end) is migrated by the release server itself, then
# filled with generate_series in SQL; the products' count in catalogue_stats is set in the
# same transaction, as the server's own product creation keeps it. Each figure is one
# connection sending requests back to back (wrk -c1, or curl when wrk is missing), after a
# warm-up: latency p50 / p99 / mean and requests per second.
#
# Knobs (environment):
#   DATABASE_URL (required)      any database on the server to use; the scratch one is created beside it
#   BENCH_CATALOGUE_SECS (5)     seconds per measured run
#   BENCH_CATALOGUE_PORT (18090) BENCH_SKIP_BUILD (0)
set -euo pipefail
cd "$(dirname "$0")/.."

: "${DATABASE_URL:?set DATABASE_URL (make db-url prints the local one)}"
secs="${BENCH_CATALOGUE_SECS:-5}"
port="${BENCH_CATALOGUE_PORT:-18090}"
db="shop_bench_catalogue"
url="${DATABASE_URL%/*}/${db}"
admin_url="${DATABASE_URL%/*}/postgres"
base="http://127.0.0.1:${port}"

psql_() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 "$@"; }
work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  psql_ "$admin_url" -c "DROP DATABASE IF EXISTS ${db} WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release --bin shop-server 2>&1 | tail -1
fi
[ -x target/release/shop-server ] || { echo "target/release/shop-server is missing" >&2; exit 1; }

psql_ "$admin_url" -c "DROP DATABASE IF EXISTS ${db} WITH (FORCE)" -c "CREATE DATABASE ${db}" >/dev/null
DATABASE_URL="$url" BIND_ADDR="127.0.0.1:${port}" RUST_LOG=warn SEED_DEMO_DATA=false \
  target/release/shop-server >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 300); do curl -sf "$base/health/ready" >/dev/null && break; sleep 0.1; done
curl -sf "$base/health/ready" >/dev/null || { cat "$work/server.log"; echo "server did not start" >&2; exit 1; }

# seed FROM TO: TO - FROM + 1 more products (ids FROM..TO in a fresh database), counted in
# the same transaction.
seed() {
  psql_ "$url" <<SQL >/dev/null
BEGIN;
INSERT INTO products (name, description, price, stock, created_at, updated_at)
SELECT 'product ' || i, 'a product of the catalogue benchmark', (i % 1000) * 100, 1000, now(), now()
FROM generate_series($1, $2) AS i;
UPDATE catalogue_stats SET product_count = product_count + ($2 - $1 + 1);
COMMIT;
VACUUM ANALYZE products;
SQL
  [ "$(psql_ -At "$url" -c "SELECT product_count = (SELECT count(*) FROM products) FROM catalogue_stats")" = t ] \
    || { echo "catalogue_stats does not match the products" >&2; exit 1; }
}

# to_ms VALUE: wrk's "450.12us" / "1.20ms" / "1.01s" in milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000
    printf "%.3f", n }'
}

# measure PATH: prints "p50_ms p99_ms mean_ms req_per_s" for one connection, back to back.
measure() {
  local path=$1
  curl -sf "$base$path" -o "$work/body.json" || { echo "GET $path failed" >&2; exit 1; }
  if command -v wrk >/dev/null 2>&1; then
    wrk -t1 -c1 -d1s "$base$path" >/dev/null
    wrk -t1 -c1 -d"${secs}s" --latency "$base$path" >"$work/wrk.txt"
    local mean p50 p99 rps
    mean=$(awk '$1 == "Latency" { print $2; exit }' "$work/wrk.txt")
    p50=$(awk '$1 == "50%" { print $2; exit }' "$work/wrk.txt")
    p99=$(awk '$1 == "99%" { print $2; exit }' "$work/wrk.txt")
    rps=$(awk '$1 == "Requests/sec:" { print $2; exit }' "$work/wrk.txt")
    echo "$(to_ms "$p50") $(to_ms "$p99") $(to_ms "$mean") $rps"
  else
    local n=$((secs * 100)) urls=()
    for _ in $(seq 1 "$n"); do urls+=("$base$path"); done
    curl -s -o /dev/null "${urls[@]:0:50}"
    curl -s -o /dev/null -w '%{time_total}\n' "${urls[@]}" | sort -n | awk '
      { t[NR] = $1 * 1000; sum += $1 * 1000 }
      END { printf "%.3f %.3f %.3f %.0f\n", t[int(NR * 0.5) + 1], t[int(NR * 0.99)], sum / NR, NR / (sum / 1000) }'
  fi
}

declare -A P50
printf '%-44s %10s %10s %10s %10s %8s\n' "request" "p50 ms" "p99 ms" "mean ms" "req/s" "x base"
row() {
  local key=$1 label=$2 path=$3 p50 p99 mean rps ratio
  read -r p50 p99 mean rps < <(measure "$path")
  P50[$key]=$p50
  ratio=$(awk -v a="$p50" -v b="${P50[base]:-$p50}" 'BEGIN { printf "%.2f", a / b }')
  printf '%-44s %10s %10s %10s %10s %8s\n' "$label" "$p50" "$p99" "$mean" "$rps" "$ratio"
}

seed 1 1000
row base "1,000 products: ?page=1&size=20" "/api/v1/products?page=1&size=20"
seed 1001 1000000
row page1 "1,000,000 products: ?page=1&size=20" "/api/v1/products?page=1&size=20"
row keyset "1,000,000 products: ?after=999000&size=20" "/api/v1/products?after=999000&size=20"
row offset "1,000,000 products: ?page=50000&size=20" "/api/v1/products?page=50000&size=20"
row detail "1,000,000 products: /products/999000" "/api/v1/products/999000"
echo
awk -v a="${P50[page1]}" -v k="${P50[keyset]}" -v b="${P50[base]}" 'BEGIN {
  ok = (a <= 1.5 * b && k <= 1.5 * b)
  printf "target (page 1 and keyset at 1,000,000 within 1.5x of page 1 at 1,000): %s (%.2fx, %.2fx)\n",
    ok ? "met" : "MISSED", a / b, k / b }'
