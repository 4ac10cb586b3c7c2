#!/usr/bin/env bash
# `make bench`: the hot-coupon benchmark, with its single-row pgbench reference measured
# in the same run on the same machine. Figures go to stdout; docs/benchmarks.md records them.
#
#   BENCH_USERS (20000)  BENCH_CONCURRENCY (64)  BENCH_PGBENCH_SECS (10)
set -euo pipefail
cd "$(dirname "$0")/.."

: "${DATABASE_URL:?set DATABASE_URL (make bench provides it)}"
users="${BENCH_USERS:-20000}"
concurrency="${BENCH_CONCURRENCY:-64}"
pg_secs="${BENCH_PGBENCH_SECS:-10}"
port="${BENCH_PORT:-18080}"
token="bench-token"
bench_db="shop_bench"
bench_url="${DATABASE_URL%/*}/${bench_db}"
admin_url="${DATABASE_URL%/*}/postgres"

pgbin=$(dirname "$(readlink -f "$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -1)")")
psql_() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

echo "== building (release)"
cargo build --release --bin shop-server --example hot_coupon 2>&1 | tail -1

psql_ "$admin_url" -c "DROP DATABASE IF EXISTS ${bench_db} WITH (FORCE)" -c "CREATE DATABASE ${bench_db}"

echo "== reference: pgbench, one counter row + user-coupon insert, 32 clients, ${pg_secs}s"
psql_ "$bench_url" <<'SQL'
CREATE TABLE ref_coupon (id int PRIMARY KEY, remaining bigint NOT NULL CHECK (remaining >= 0));
CREATE TABLE ref_user_coupon (user_id bigint PRIMARY KEY, coupon_id int NOT NULL, issued_at timestamptz NOT NULL DEFAULT now());
INSERT INTO ref_coupon VALUES (1, 1000000000);
SQL
script=$(mktemp)
cat >"$script" <<'SQL'
\set uid random(1, 2000000000)
BEGIN;
UPDATE ref_coupon SET remaining = remaining - 1 WHERE id = 1 AND remaining > 0;
INSERT INTO ref_user_coupon (user_id, coupon_id) VALUES (:uid, 1) ON CONFLICT DO NOTHING;
COMMIT;
SQL
pgbench_out=$("$pgbin/pgbench" -n -c 32 -j 2 -T "$pg_secs" -f "$script" "$bench_url" 2>&1)
rm -f "$script"
ref_tps=$(printf '%s\n' "$pgbench_out" | awk '/^tps = / {print int($3)}' | tail -1)
echo "pgbench single-row reference: ${ref_tps} tps"

echo "== hot coupon through the HTTP API (${users} users, concurrency ${concurrency})"
DATABASE_URL="$bench_url" BIND_ADDR="127.0.0.1:${port}" ADMIN_TOKEN="$token" RUST_LOG=warn \
  DB_POOL_SIZE="${BENCH_POOL:-32}" target/release/shop-server >/tmp/shop-bench-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:${port}/health/ready" >/dev/null && break; sleep 0.1; done
out=$(target/release/examples/hot_coupon "http://127.0.0.1:${port}" "$token" "$users" "$concurrency")
printf '%s\n' "$out" | grep -v '^HOT_COUPON'
ours=$(printf '%s\n' "$out" | awk -F= '/^HOT_COUPON_ISSUES_PER_SEC=/ {print $2}')
ratio=$(awk -v a="$ours" -v b="$ref_tps" 'BEGIN { printf "%.1f", a / b }')
echo "== result: ${ours} issues/s through HTTP vs ${ref_tps} tps single-row pgbench reference = ${ratio}x"
