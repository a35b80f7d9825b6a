#!/usr/bin/env bash
# The cluster benchmarks of the client issue, on this machine, over loopback:
#   1. produce 1 KiB messages with flush=sync, at least 10 GB, with a ledger;
#   2. consume that backlog from the earliest offsets (read from disk: it is far larger
#      than the tail cache);
#   3. verify the ledger against the topic (nothing acknowledged lost or corrupt);
#   4. 100-byte messages: messages per second;
#   5. end-to-end latency at half of the 1 KiB rate measured in step 1.
# Usage: perf/scripts/bench_cluster.sh [GB, default 10] [work directory, default ./bench-cluster]
# The work directory must be on a disk that takes O_DIRECT; it is removed at the end.
set -euo pipefail

gigabytes=${1:-10}
work=${2:-./bench-cluster}
cd "$(dirname "$0")/../.."
cargo build --release -p spillway-perf -p spillway-broker -p spillway-nameserver
bin=$PWD/target/release
mkdir -p "$work"
work=$(cd "$work" && pwd)
results=$work/results
mkdir -p "$results"

"$bin/spillway-nameserver" --listen 127.0.0.1:0 >"$work/ns.out" 2>"$work/ns.err" &
ns_pid=$!
trap 'kill $ns_pid $broker_pid 2>/dev/null || true' EXIT
until grep -q "listening on" "$work/ns.out"; do sleep 0.1; done
ns=$(sed -n 's/listening on //p' "$work/ns.out")

cat >"$work/broker.toml" <<TOML
cluster = "bench"
broker_name = "broker-a"
listen_address = "127.0.0.1:0"
name_servers = ["$ns"]
shard_count = 2
heartbeat_interval_ms = 1000
[storage]
data_dir = "$work/data"
flush = "sync"
[[topics]]
name = "bench-1k"
queues = 8
[[topics]]
name = "bench-100"
queues = 8
[[topics]]
name = "bench-e2e"
queues = 8
TOML
"$bin/spillway-broker" --config "$work/broker.toml" >"$work/broker.out" 2>"$work/broker.err" &
broker_pid=$!
until grep -q "listening on" "$work/broker.out"; do sleep 0.1; done
sleep 2 # the broker registers with the name server within one heartbeat

messages=$((gigabytes * 1000 * 1000 * 1000 / 1024))
echo "== produce $messages x 1 KiB (sync)"
"$bin/spillway-perf" produce --name-server "$ns" --topic bench-1k --message-size 1024 \
    --producers 2 --messages "$messages" --ledger "$work/acked.ledger" --json "$results/produce-1k.json"
echo "== consume the backlog"
"$bin/spillway-perf" consume --name-server "$ns" --topic bench-1k --from earliest --drain \
    --consumers 2 --json "$results/consume-backlog.json"
echo "== verify"
"$bin/spillway-perf" verify --name-server "$ns" --topic bench-1k --ledger "$work/acked.ledger" \
    --json "$results/verify.json"
echo "== produce 100 B"
"$bin/spillway-perf" produce --name-server "$ns" --topic bench-100 --message-size 100 \
    --producers 3 --duration 20 --json "$results/produce-100.json"
rate=$(python3 -c "import json;print(int(json.load(open('$results/produce-1k.json'))['messages_per_s']/2))")
echo "== e2e at half the 1 KiB rate: $rate msgs/s"
"$bin/spillway-perf" e2e --name-server "$ns" --topic bench-e2e --message-size 1024 \
    --rate "$rate" --duration 20 --json "$results/e2e.json" --hdr "$results/e2e.hdr"

kill -TERM "$broker_pid"; wait "$broker_pid" || true
kill -TERM "$ns_pid"; wait "$ns_pid" || true
trap - EXIT
echo "results in $results"
rm -rf "$work/data" "$work/acked.ledger"
