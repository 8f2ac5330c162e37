#!/usr/bin/env bash
# Two keyledger processes on one PostgreSQL database, end to end.
#
# Usage: docs/recipes/postgres-two-processes.sh [ADMIN_URL] [KEYLEDGER_BINARY]
#
#   ADMIN_URL         a PostgreSQL URL allowed to create and drop databases
#                     (or $KEYLEDGER_PG_ADMIN_URL;
#                     default postgres://postgres@127.0.0.1:5432/postgres)
#   KEYLEDGER_BINARY  the keyledger binary to run
#                     (or $KEYLEDGER_BIN; default target/release/keyledger)
#
# It creates a fresh database with a unique name, starts two keyledger
# processes (A and B) on two free loopback ports against it, sharing one
# master key, one checkpoint signing key, one machine-id secret and one
# operator token; creates a tenant, a user key and a license through A,
# activates a machine through B, validates it through A, and prints PASS.
# On exit, whatever happened, it stops both processes and drops the
# database. It exits non-zero on any failure, and gives up (and cleans up)
# within a minute.
#
# Needs: curl, jq, openssl, createdb and dropdb (PostgreSQL's client
# tools), python3 (to find free ports).
# The manual's page docs/operations/postgresql-and-nats.md explains each step.
set -euo pipefail

admin_url=${1:-${KEYLEDGER_PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}}
binary=${2:-${KEYLEDGER_BIN:-target/release/keyledger}}

say() { echo "==> $*"; }
fail() {
  echo "==> FAIL: $*" >&2
  exit 1
}

for tool in curl jq openssl createdb dropdb python3; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done
[[ -x $binary ]] || fail "no keyledger binary at $binary (build one with 'cargo build --release', or pass its path)"

# --- Clean-up, on every exit ---------------------------------------------------
db= work= pid_a= pid_b= watchdog=
stop_servers() { # SIGTERM (a graceful stop) to both, SIGKILL to what is left after 5 s
  local pids=() pid i
  for pid in "$pid_a" "$pid_b"; do
    if [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null; then pids+=("$pid"); fi
  done
  for ((i = 0; i < 25; i++)); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.2
  done
  for pid in "${pids[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
cleanup() {
  local rc=$?
  trap - EXIT TERM INT
  if [[ -n $watchdog ]]; then kill "$watchdog" 2>/dev/null || true; fi
  if ((rc != 0)) && [[ -n $work ]]; then
    for name in a b; do
      if [[ -f $work/$name.log ]]; then
        echo "--- last lines of process ${name^^}'s log:" >&2
        tail -n 15 "$work/$name.log" >&2 || true
      fi
    done
  fi
  stop_servers
  if [[ -n $db ]]; then
    say "dropping database $db"
    dropdb --maintenance-db="$admin_url" --if-exists --force "$db" || echo "==> could not drop $db" >&2
  fi
  if [[ -n $work ]]; then rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'fail "interrupted"' INT
trap 'fail "timed out"' TERM
(sleep 45 && kill -TERM $$ 2>/dev/null) </dev/null >/dev/null 2>&1 &
watchdog=$!

# --- 1. A database of its own ------------------------------------------------------
db=kl_recipe_$(date +%s)_$$
say "creating database $db"
createdb --maintenance-db="$admin_url" "$db" || { db=; fail "createdb failed (is $admin_url an admin URL?)"; }

# keyledger's URL: the admin URL with the new database's name, keeping its
# query. A server on this host needs no TLS: without an sslmode of the
# URL's own, ask for none (TLS to a local server costs CPU for nothing).
base=${admin_url%%\?*}
query=${admin_url#"$base"}
database_url=${base%/*}/$db$query
if [[ $query != *sslmode=* ]]; then
  case $base in
    *@127.0.0.1[:/]* | *@localhost[:/]* | *@\[::1\][:/]* | *://127.0.0.1[:/]* | *://localhost[:/]*)
      database_url+=$([[ -n $query ]] && echo "&" || echo "?")sslmode=disable
      ;;
  esac
fi

# --- 2. One set of secrets for every process ------------------------------------
# The master key seals tenants' private keys in the database; the signing
# key signs audit checkpoints; the machine-id secret keys the hashes of
# machine ids; the operator token is the platform administrator's key.
# Every process on one database needs the same ones.
export KEYLEDGER_DATABASE_URL=$database_url
export KEYLEDGER_MASTER_KEY=$(openssl rand -hex 32)
export KEYLEDGER_SIGNING_KEY=$(openssl rand -hex 32)
export KEYLEDGER_MACHINE_ID_SECRET=$(openssl rand -hex 32)
export KEYLEDGER_OPERATOR_TOKEN=$(openssl rand -hex 24)
export KEYLEDGER_LOG=${KEYLEDGER_LOG:-info}

# --- 3. Two processes on two free loopback ports -----------------------------------
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
work=$(mktemp -d)
port_a=$(free_port)
port_b=$(free_port)
while [[ $port_b == "$port_a" ]]; do port_b=$(free_port); done

say "starting process A on 127.0.0.1:$port_a and process B on 127.0.0.1:$port_b"
KEYLEDGER_LISTEN=127.0.0.1:$port_a KEYLEDGER_DATA_DIR=$work/a "$binary" >"$work/a.log" 2>&1 &
pid_a=$!
KEYLEDGER_LISTEN=127.0.0.1:$port_b KEYLEDGER_DATA_DIR=$work/b "$binary" >"$work/b.log" 2>&1 &
pid_b=$!
A=http://127.0.0.1:$port_a
B=http://127.0.0.1:$port_b

wait_up() { # wait_up NAME URL PID: until GET / answers, at most 30 s
  local name=$1 url=$2 pid=$3 i
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || fail "process $name exited (its log is below)"
    curl -sf --max-time 2 "$url/" >/dev/null && return 0
    sleep 0.2
  done
  fail "process $name did not answer within 30 s"
}
wait_up A "$A" "$pid_a"
wait_up B "$B" "$pid_b"
for url in "$A" "$B"; do
  store=$(curl -s --max-time 10 "$url/health" | jq -r .store)
  [[ $store == postgres ]] || fail "$url/health says store=$store, not postgres"
done

# --- 4. A tenant, a key and a license, through A -----------------------------------
post() { # post URL JSON [curl args...]: prints the body, fails on a non-2xx
  local url=$1 body=$2
  shift 2
  curl -sS --fail-with-body --max-time 10 "$url" --json "$body" "$@" || fail "POST $url failed"
}
tenant=$(post "$A/api/v1/tenants" '{"name": "Recipe"}' -H "Authorization: Bearer $KEYLEDGER_OPERATOR_TOKEN")
admin=$(jq -r .adminKey <<<"$tenant")
user=$(post "$A/api/v1/api-keys" '{"role": "user", "name": "recipe"}' -H "X-API-Key: $admin" | jq -r .key)
key=$(post "$A/api/v1/licenses/generate" '{"validityDays": 30}' -H "Authorization: Bearer $user" | jq -r .licenseKey)
say "license $key generated through A"

# --- 5. Activate through B, validate through A --------------------------------------
machine=recipe-machine-$$
activated=$(post "$B/api/v1/licenses/activate" "{\"licenseKey\": \"$key\", \"machineId\": \"$machine\"}")
[[ $(jq -r .code <<<"$activated") == VALID ]] || fail "activation through B: $activated"
say "activated through B"

validated=$(post "$A/api/v1/licenses/validate" "{\"licenseKey\": \"$key\", \"machineId\": \"$machine\"}")
[[ $(jq -r .isValid <<<"$validated") == true ]] || fail "validation through A: $validated"
say "validated through A: $(jq -c '{isValid, code}' <<<"$validated")"

# The seat B gave is taken in A too: a second machine is refused through A
# (the license has one seat).
second=$(curl -s --max-time 10 "$A/api/v1/licenses/activate" \
  --json "{\"licenseKey\": \"$key\", \"machineId\": \"$machine-other\"}")
[[ $(jq -r .code <<<"$second") == TOO_MANY_MACHINES ]] || fail "a second machine through A: $second"
say "a second machine is refused through A: $(jq -c '{success, code}' <<<"$second")"

echo PASS
