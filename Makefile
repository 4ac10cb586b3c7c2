# The README's interface: `make run` and `make test` do all the set-up.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# A local PostgreSQL is provisioned only when DATABASE_URL is not given.
LOCAL_DB_URL := $(shell scripts/db.sh url)
ADMIN_TOKEN ?= dev-admin-token
export ADMIN_TOKEN
# libpq built with GSSAPI probes Kerberos on every new connection unless told not to; a
# test binary exiting while a pool thread is inside that probe can abort in libkrb5
# (seen once: krb5int_getspecific). Nothing here uses GSS encryption; set it to override.
PGGSSENCMODE ?= disable
export PGGSSENCMODE

.PHONY: help run test cluster-test lint schema fmt bench fuzz fuzz-ci db-up db-down db-url deps

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

deps: ## install what the build needs (libpq headers) when missing
	@scripts/deps.sh

db-up: ## provision (first time) and start the project-local PostgreSQL
	@scripts/db.sh up

db-down: ## stop the project-local PostgreSQL
	@scripts/db.sh down

db-url: ## print the DATABASE_URL of the project-local PostgreSQL
	@echo $(LOCAL_DB_URL)

run: deps ## start the server (and the local PostgreSQL unless DATABASE_URL is set)
	@if [ -z "$$DATABASE_URL" ]; then scripts/db.sh up; fi
	cargo build --release --bin shop-server
	@url="$${DATABASE_URL:-$(LOCAL_DB_URL)}"; bind="$${BIND_ADDR:-127.0.0.1:8080}"; \
	  echo "shop server:  http://$$bind"; \
	  echo "API docs:     http://$$bind/docs"; \
	  echo "admin token:  $$ADMIN_TOKEN   (development only; set ADMIN_TOKEN to change it)"; \
	  DATABASE_URL="$$url" SEED_DEMO_DATA="$${SEED_DEMO_DATA:-true}" exec target/release/shop-server

test: deps ## provision/start the local PostgreSQL and NATS (JetStream), then run every test (cargo, then a generated client's flow)
	@# A German locale for the test of a server whose messages are not English. PostgreSQL
	@# sees only the locales there were when it started: a local one already running (make
	@# lint starts it) is restarted when the locale was generated now.
	@if [ "$$(scripts/locale.sh de_DE.UTF-8)" = generated ] && [ -z "$$DATABASE_URL" ]; then scripts/db.sh down; fi
	@if [ -z "$$DATABASE_URL" ]; then scripts/db.sh up; fi
	@# Debian's PgBouncer, which tests start in front of the test database.
	@scripts/pgbouncer.sh bin >/dev/null
	@# The local nats-server (scripts/nats.sh) runs for the cargo tests only, unless NATS_URL
	@# names another; one this recipe starts has an empty store and is stopped afterwards,
	@# even when tests fail.
	@url="$${DATABASE_URL:-$(LOCAL_DB_URL)}"; \
	  NATS_SERVER_BIN="$${NATS_SERVER_BIN:-$$(scripts/nats.sh bin)}"; export NATS_SERVER_BIN; \
	  if [ -z "$$NATS_URL" ] && ! scripts/nats.sh status; then \
	    trap 'scripts/nats.sh down' EXIT; scripts/nats.sh up --fresh; \
	  fi; \
	  nats="$${NATS_URL:-$$(scripts/nats.sh url)}"; \
	  if cargo nextest --version >/dev/null 2>&1; then \
	    DATABASE_URL="$$url" NATS_URL="$$nats" cargo nextest run --workspace --no-fail-fast; \
	  else \
	    DATABASE_URL="$$url" NATS_URL="$$nats" cargo test --workspace --no-fail-fast; \
	  fi
	@scripts/client-flow.sh

cluster-test: deps ## the shop scaled out here (primary + replica, PgBouncer, 3 NATS nodes, 3 instances, nginx) under load and faults; checks its invariants
	@scripts/pgbouncer.sh bin >/dev/null
	@scripts/nginx.sh bin >/dev/null
	cargo build --release --bin shop-server
	@# The driver in the dev profile: it shares make test's build, not the server's.
	cargo build -p cluster-test
	@# Every file of the run (primary, replica, PgBouncer, NATS stores, nginx, instance logs) under
	@# .cluster/; a failed run keeps its directory for the logs.
	@mkdir -p .cluster
	@TMPDIR="$(CURDIR)/.cluster" \
	  NATS_SERVER_BIN="$${NATS_SERVER_BIN:-$$(scripts/nats.sh bin)}" \
	  SHOP_SERVER_BIN="$(CURDIR)/target/release/shop-server" target/debug/cluster-test

fuzz: deps ## schemathesis: every check of /openapi.json against a fresh server (FUZZ_MAX_EXAMPLES, default 100)
	@if [ -z "$$DATABASE_URL" ]; then scripts/db.sh up; fi
	@scripts/fuzz.sh

fuzz-ci: deps ## the short fuzz that CI runs (about a minute)
	@if [ -z "$$DATABASE_URL" ]; then scripts/db.sh up; fi
	@FUZZ_MAX_EXAMPLES="$${FUZZ_MAX_EXAMPLES:-25}" scripts/fuzz.sh

lint: deps ## rustfmt check, clippy and rustdoc with warnings as errors; schema.rs matches the migrations
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --document-private-items
	@if [ -z "$$DATABASE_URL" ]; then scripts/db.sh up; fi
	@DATABASE_URL="$${DATABASE_URL:-$(LOCAL_DB_URL)}" scripts/schema.sh check

schema: deps ## regenerate crates/adapter-postgres/src/schema.rs from the migrations (diesel print-schema)
	@if [ -z "$$DATABASE_URL" ]; then scripts/db.sh up; fi
	@DATABASE_URL="$${DATABASE_URL:-$(LOCAL_DB_URL)}" scripts/schema.sh write

fmt: ## format the code
	cargo fmt --all

bench: deps ## benchmarks (see docs/benchmarks.md)
	@if [ -z "$$DATABASE_URL" ]; then scripts/db.sh up; fi
	@url="$${DATABASE_URL:-$(LOCAL_DB_URL)}"; DATABASE_URL="$$url" scripts/bench.sh
