#!/usr/bin/env bash
# Install the system packages that the test servers (tests/servers/) need on
# Debian 12: redis-server + redis-tools, redis-sentinel, PostgreSQL 15 server
# binaries, pgbouncer (transaction pooling in front of the test PostgreSQL),
# openssl (makes the test CA of the TLS servers), runuser, chromium (headless,
# renders the notebook example's transcript) and python3.11-doc (its objects.inv
# lets the Sphinx build, nitpicky with -W, link standard-library names offline;
# see docs/conf.py). Idempotent: installs only what is missing. Starts no service: the
# tests start their own throwaway servers on free loopback ports.
# Python packages (redis, psycopg2-binary, boto3, moto[server], pytest, nbclient) come
# from the project's dev dependencies, not from here.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
PG_BIN=/usr/lib/postgresql/15/bin
PY_INV=/usr/share/doc/python3.11/html/objects.inv

log() { printf '[install-test-deps] %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi

packages=()
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  packages+=(redis-server redis-tools)
else
  log "redis-server and redis-cli present: $(redis-server --version | head -n1)"
fi
if ! command -v redis-sentinel >/dev/null 2>&1; then
  packages+=(redis-sentinel)
else
  log "redis-sentinel present: $(command -v redis-sentinel)"
fi
if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
  packages+=(pgbouncer)
else
  log "pgbouncer present: $(PATH="$PATH:/usr/sbin" pgbouncer --version | head -n1)"
fi
if ! command -v openssl >/dev/null 2>&1; then
  packages+=(openssl)
else
  log "openssl present: $(openssl version)"
fi
if [ ! -x "$PG_BIN/initdb" ] || [ ! -x "$PG_BIN/pg_ctl" ] || [ ! -x "$PG_BIN/postgres" ]; then
  packages+=(postgresql-15)
else
  log "PostgreSQL 15 binaries present in $PG_BIN: $("$PG_BIN/postgres" --version)"
fi
if ! command -v runuser >/dev/null 2>&1; then
  packages+=(util-linux)
else
  log "runuser present: $(command -v runuser)"
fi

if ! command -v chromium >/dev/null 2>&1; then
  packages+=(chromium)
else
  log "chromium present: $(chromium --version 2>/dev/null | head -n1)"
fi

if [ ! -f "$PY_INV" ]; then
  packages+=(python3.11-doc)
else
  log "Python documentation inventory present: $PY_INV"
fi

if [ "${#packages[@]}" -eq 0 ]; then
  log "nothing to install"
else
  # Keep package postinst scripts from starting services (standard Debian
  # policy-rc.d mechanism); only if no policy is in place already.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    log "creating temporary $policy (exit 101) so that no service is started"
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 0755 "$policy"
    created_policy=1
  fi
  cleanup_policy() {
    if [ "$created_policy" -eq 1 ]; then
      log "removing temporary $policy"
      $SUDO rm -f "$policy"
    fi
  }
  trap cleanup_policy EXIT

  log "apt-get update"
  $SUDO apt-get update -q
  log "apt-get install ${packages[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"
fi

# Final check: fail loudly if anything is still missing.
missing=0
PATH="$PATH:/usr/sbin"
for exe in redis-server redis-cli redis-sentinel pgbouncer openssl runuser chromium; do
  if ! command -v "$exe" >/dev/null 2>&1; then
    log "ERROR: $exe still missing"
    missing=1
  fi
done
for exe in initdb pg_ctl postgres; do
  if [ ! -x "$PG_BIN/$exe" ]; then
    log "ERROR: $PG_BIN/$exe still missing"
    missing=1
  fi
done
if [ ! -f "$PY_INV" ]; then
  log "ERROR: $PY_INV still missing (package python3.11-doc)"
  missing=1
fi
if ! id postgres >/dev/null 2>&1; then
  log "ERROR: no 'postgres' system user (needed to run initdb as root)"
  missing=1
fi
[ "$missing" -eq 0 ] || exit 1
log "ok: redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'), $("$PG_BIN/postgres" --version)"
