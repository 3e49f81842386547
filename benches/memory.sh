#!/usr/bin/env bash
# Peak RSS of one `tributary sync` (a child process) of N HubSpot contacts served by
# `tributary simulate` (another process) on loopback, into a fresh SQLite database.
# The HubSpot manifest is copied without its rate limit (this measures memory, not pacing).
#
#   cargo build --release && benches/memory.sh            # N = 100000 and 1000000
#   BIN=target/debug/tributary MEMORY_N="1000 10000" benches/memory.sh
#
# Prints, per N: records fetched, wall time, and the sync process's peak RSS (VmHWM, read
# from /proc/<pid>/status until it exits; GNU time's maximum RSS as a cross-check).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/tributary}
SIZES=${MEMORY_N:-"100000 1000000"}
work=$(mktemp -d)
sim_pid=
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cp -r connectors "$work/connectors"
python3 - "$work/connectors/hubspot.toml" <<'EOF'
import sys, re
p = sys.argv[1]
s = open(p).read()
s = re.sub(r"\n\[rate_limit\]\n(?:[^\n\[]+\n)*", "\n", s)
open(p, "w").write(s)
EOF
export TRIBUTARY_CONNECTORS="$work/connectors" RUST_LOG=warn

for n in $SIZES; do
  port=$((20000 + RANDOM % 20000))
  "$BIN" simulate --provider hubspot --records "$n" --port "$port" >"$work/sim.log" 2>&1 &
  sim_pid=$!
  for _ in $(seq 100); do grep -q "credentials:" "$work/sim.log" && break; sleep 0.1; done
  creds=$(sed -n 's/^  credentials: //p' "$work/sim.log")
  export TRIBUTARY_DATABASE_URL="sqlite://$work/mem-$n.db"
  cat >"$work/acme.toml" <<EOF
id = "acme"
name = "Acme"
subdomain = "acme"
preset = "aptem_hubspot"
[providers.hubspot]
base_url = "http://127.0.0.1:$port"
EOF
  "$BIN" tenant apply "$work/acme.toml" >/dev/null
  echo "$creds" | "$BIN" credentials set --tenant acme --provider hubspot >/dev/null
  start=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$work/time.out" "$BIN" --json sync --tenant acme --provider hubspot --stream contacts \
    >"$work/sync.out" 2>"$work/sync.err" &
  time_pid=$!
  hwm=0
  while kill -0 "$time_pid" 2>/dev/null; do
    pid=$(pgrep -P "$time_pid" || true)
    if [ -n "$pid" ]; then
      v=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
      [ -n "$v" ] && [ "$v" -gt "$hwm" ] && hwm=$v
    fi
    sleep 0.05
  done
  wait "$time_pid" || { cat "$work/sync.err"; exit 1; }
  end=$(date +%s.%N)
  fetched=$(grep -o '"fetched": *[0-9]*' "$work/sync.out" | head -1 | grep -o '[0-9]*$' || echo "?")
  printf 'N=%s fetched=%s wall=%.1fs VmHWM=%d kB (%.1f MiB) gnu-time-maxrss=%s kB\n' \
    "$n" "$fetched" "$(echo "$end - $start" | bc)" "$hwm" "$(echo "$hwm / 1024" | bc -l)" "$(cat "$work/time.out")"
  kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true; sim_pid=
done
