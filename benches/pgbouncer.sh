#!/usr/bin/env bash
# The PostgreSQL store straight on the server and behind PgBouncer in transaction mode
# (`[store] pooler = "pgbouncer"`), side by side in one run: a full `tributary sync` of
# N Aptem learners served by `tributary simulate` on loopback (the manifest copied
# without its rate limit), and a short command (`tributary tenant list`: start-up,
# migration check, one read). Each mode gets a fresh database; the modes alternate, so
# a loaded machine weighs on both alike. Both connect without TLS (this PgBouncer
# offers none; the server would, and its handshake would dominate the short command).
#
#   cargo build --release && benches/pgbouncer.sh
#   BIN=target/debug/tributary PGB_N=5000 PGB_ROUNDS=1 benches/pgbouncer.sh
#
# Needs `pgbouncer` (Debian: apt-get install pgbouncer) and PostgreSQL at
# $TRIBUTARY_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/test, trust).
# Prints, per round and mode: the sync's wall time and records fetched, and the median
# wall time of 10 `tenant list` calls.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/tributary}
N=${PGB_N:-50000}
ROUNDS=${PGB_ROUNDS:-3}
POOL=${PGB_POOL:-4}
SERVER=${TRIBUTARY_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
work=$(mktemp -d)
chmod 755 "$work"
sim_pid= bouncer_pid=
db=tributary_bench_pgb_$$
cleanup() {
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null
  [ -n "$bouncer_pid" ] && kill "$bouncer_pid" 2>/dev/null
  for mode in direct pgbouncer; do psql "$SERVER" -qc "DROP DATABASE IF EXISTS ${db}_$mode WITH (FORCE)" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

cp -r connectors "$work/connectors"
python3 - "$work/connectors/aptem.toml" <<'EOF'
import sys, re
p = sys.argv[1]
s = open(p).read()
s = re.sub(r"\n\[rate_limit\][^\n]*\n(?:[^\n\[]+\n)*", "\n", s)
open(p, "w").write(s)
EOF
export TRIBUTARY_CONNECTORS="$work/connectors" TRIBUTARY_LOG=warn TRIBUTARY_MASTER_KEY_FILE="$work/master.key"
head -c 32 /dev/urandom >"$work/master.key"
chmod 600 "$work/master.key"

# PgBouncer on a free port, transaction mode, a pool of $POOL.
host=$(python3 -c "import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p.hostname or '127.0.0.1', p.port or 5432, p.username or 'postgres')" "$SERVER")
read -r pg_host pg_port pg_user <<<"$host"
bport=$((20000 + RANDOM % 20000))
echo "\"$pg_user\" \"\"" >"$work/users.txt"
cat >"$work/pgbouncer.ini" <<EOF
[databases]
* = host=$pg_host port=$pg_port
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bport
unix_socket_dir =
auth_type = trust
auth_file = $work/users.txt
pool_mode = transaction
default_pool_size = $POOL
max_db_connections = $POOL
max_client_conn = 200
EOF
chmod 644 "$work/pgbouncer.ini" "$work/users.txt"
as_user=()
[ "$(id -u)" = 0 ] && as_user=(-u nobody)
"$PGBOUNCER" "${as_user[@]}" "$work/pgbouncer.ini" 2>"$work/pgbouncer.log" &
bouncer_pid=$!

port=$((20000 + RANDOM % 20000))
[ "$port" = "$bport" ] && port=$((port + 1))
: >"$work/sim.log"
"$BIN" simulate --provider aptem --records "$N" --port "$port" >"$work/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 100); do grep -q "credentials:" "$work/sim.log" && break; sleep 0.1; done
creds=$(sed -n 's/^  credentials: //p' "$work/sim.log")
api=$(sed -n 's/.*(api \([^,]*\),.*/\1/p' "$work/sim.log")
cat >"$work/acme.toml" <<EOF
id = "acme"
name = "Acme"
subdomain = "acme"
preset = "aptem"
[providers.aptem]
base_url = "$api"
EOF

for mode in direct pgbouncer; do
  psql "$SERVER" -qc "CREATE DATABASE ${db}_$mode"
  mkdir -p "$work/config-$mode"
  cp config/entities.toml config/presets.toml "$work/config-$mode/"
  if [ "$mode" = pgbouncer ]; then
    printf '[store]\npooler = "pgbouncer"\nlisten_url = "postgres://%s@%s:%s/%s"\n' \
      "$pg_user" "$pg_host" "$pg_port" "${db}_$mode" >"$work/config-$mode/tributary.toml"
  fi
done
url() { # mode
  if [ "$1" = pgbouncer ]; then echo "postgres://$pg_user@127.0.0.1:$bport/${db}_$1"; else echo "postgres://$pg_user@$pg_host:$pg_port/${db}_$1?sslmode=disable"; fi
}
run() { # mode args...
  local mode=$1; shift
  TRIBUTARY_CONFIG="$work/config-$mode" TRIBUTARY_DATABASE_URL=$(url "$mode") "$BIN" "$@"
}
for mode in direct pgbouncer; do
  run "$mode" tenant apply "$work/acme.toml" >/dev/null
  echo "$creds" | run "$mode" credentials set --tenant acme --provider aptem >/dev/null
done

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); pgbouncer $("$PGBOUNCER" --version | head -1 | cut -d' ' -f2), pool $POOL; N=$N"
for round in $(seq "$ROUNDS"); do
  for mode in direct pgbouncer; do
    start=$(date +%s.%N)
    run "$mode" --json sync --tenant acme --provider aptem --stream learners --full-refresh >"$work/sync.out" 2>"$work/sync.err" \
      || { cat "$work/sync.err"; exit 1; }
    end=$(date +%s.%N)
    fetched=$(grep -o '"fetched": *[0-9]*' "$work/sync.out" | head -1 | grep -o '[0-9]*$' || echo "?")
    times=()
    for _ in $(seq 10); do
      s=$(date +%s.%N)
      run "$mode" tenant list >/dev/null
      e=$(date +%s.%N)
      times+=("$(echo "($e - $s) * 1000" | bc)")
    done
    median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 5,6p | awk '{s += $1} END {printf "%.0f", s / NR}')
    printf 'round %s %-9s sync: %6.2f s, fetched %s; tenant list: median %s ms\n' \
      "$round" "$mode" "$(echo "$end - $start" | bc)" "$fetched" "$median"
  done
done
if grep -qi "prepared statement" "$work/pgbouncer.log"; then
  echo "pgbouncer logged prepared-statement errors:"; grep -i "prepared statement" "$work/pgbouncer.log"; exit 1
fi
