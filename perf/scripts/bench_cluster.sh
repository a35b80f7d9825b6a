#!/usr/bin/env bash
# The cluster benchmarks of the client issue, on this machine, over loopback:
#   0. the disk's own speed under the work directory, with no engine in the way
#      (`spillway-perf disk`: O_DIRECT sequential write and read, 4 KiB write + fdatasync
#      latency), the baseline the summary compares the cluster with;
#   1. produce 1 KiB messages with flush=sync, at least 10 GB, with a ledger;
#   2. consume that backlog from the earliest offsets (read from disk: it is far larger
#      than the tail cache);
#   3. verify the ledger against the topic (nothing acknowledged lost or corrupt);
#   4. 100-byte messages: messages per second;
#   5. end-to-end latency at half of the maximum end-to-end rate: first e2e unthrottled
#      (producing and consuming 1 KiB messages at once, as fast as they go), then e2e held
#      to half that rate, right after the disk's own latency at that byte rate
#      (`spillway-perf disk-paced`: bytes arriving at that rate, group-committed by one
#      writer with O_DIRECT write + fdatasync, no engine). "Maximum rate" is the e2e
#      workload's own: producing alone (step 1) goes about twice as fast, since the
#      consumers' reads then share nothing, and half of *that* is the e2e maximum, where
#      latency is queueing. Both e2e runs warm up first (--warmup: the broker's write
#      buffers are allocated and page-faulted in the first seconds at these rates) and the
#      held one sends a batch at once to an idle shard (--send-when-idle), as a
#      latency-minded producer is configured;
#   6. a summary: produce, backlog consume and e2e latency against the disk baseline.
# Producer threads: 3 for 1 KiB and 4 for 100 B messages (more sends in flight, while still
# leaving the broker its share of this 2-core machine); 1 for the e2e run, which is held to a
# fixed rate that one thread sustains, and fewer threads waiting for the two cores keep the
# tail short (p99 6.5 ms with one producer thread against 20 ms with two, at 300 MB/s).
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

# The baseline, on the disk that will hold the broker's data ($work/data), measured before
# anything else runs on it.
echo "== disk baseline in $work"
"$bin/spillway-perf" disk --dir "$work" --json >"$results/disk.json"
python3 - "$results/disk.json" <<'PY'
import json, sys
disk = json.load(open(sys.argv[1]))
latency = disk["sync_write_latency_us"]
print(f"disk: sequential write {disk['write_mb_s']:.1f} MB/s, sequential read "
      f"{disk['read_mb_s']:.1f} MB/s; 4 KiB write + fdatasync ({disk['sync_writes']} writes): "
      f"p50 {latency['p50']:.1f} us, p99 {latency['p99']:.1f} us, "
      f"p99.9 {latency['p999']:.1f} us, max {latency['max']:.1f} us")
PY

"$bin/spillway-nameserver" --listen 127.0.0.1:0 >"$work/ns.out" 2>"$work/ns.err" &
ns_pid=$!
trap 'kill ${ns_pid:-} ${broker_pid:-} 2>/dev/null || true' EXIT
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
    --producers 3 --messages "$messages" --ledger "$work/acked.ledger" --json "$results/produce-1k.json"
echo "== consume the backlog"
"$bin/spillway-perf" consume --name-server "$ns" --topic bench-1k --from earliest --drain \
    --consumers 2 --json "$results/consume-backlog.json"
echo "== verify"
"$bin/spillway-perf" verify --name-server "$ns" --topic bench-1k --ledger "$work/acked.ledger" \
    --json "$results/verify.json"
echo "== produce 100 B"
"$bin/spillway-perf" produce --name-server "$ns" --topic bench-100 --message-size 100 \
    --producers 4 --duration 20 --json "$results/produce-100.json"
echo "== e2e unthrottled (the maximum end-to-end rate)"
"$bin/spillway-perf" e2e --name-server "$ns" --topic bench-e2e --message-size 1024 \
    --producers 1 --warmup 5 --duration 15 --json "$results/e2e-max.json"
rate=$(python3 -c "import json;print(int(json.load(open('$results/e2e-max.json'))['messages_per_s']/2))")
mb_s=$(python3 -c "print($rate * 1024 / 1e6)")
echo "== the disk alone at the e2e byte rate: $mb_s MB/s"
"$bin/spillway-perf" disk-paced --dir "$work" --mb-s "$mb_s" --seconds 10 --json \
    >"$results/disk-paced.json"
echo "== e2e at half the maximum end-to-end rate: $rate msgs/s"
"$bin/spillway-perf" e2e --name-server "$ns" --topic bench-e2e --message-size 1024 \
    --producers 1 --rate "$rate" --send-when-idle --warmup 20 --duration 20 \
    --json "$results/e2e.json" --hdr "$results/e2e.hdr"

kill -TERM "$broker_pid"; wait "$broker_pid" || true
kill -TERM "$ns_pid"; wait "$ns_pid" || true
trap - EXIT

# Field names: `spillway-perf disk --json` (disk.json) and the load summaries' --json
# (perf/src/stats.rs, `Summary`). MB is 10^6 bytes in both.
python3 - "$results" <<'PY' | tee "$results/summary.txt"
import json, os, sys
results = sys.argv[1]
def load(name):
    with open(os.path.join(results, name)) as file:
        return json.load(file)
disk = load("disk.json")
produce = load("produce-1k.json")
consume = load("consume-backlog.json")
e2e = load("e2e.json")
e2e_max = load("e2e-max.json")
paced = load("disk-paced.json")
rows = [
    ("produce 1 KiB, sync (MB/s)", produce["mb_s"],
     "sequential write (MB/s)", disk["write_mb_s"]),
    ("consume backlog (MB/s)", consume["mb_s"],
     "sequential read (MB/s)", disk["read_mb_s"]),
    ("produce 1 KiB ack p99 (us)", produce["latency_us_p99"],
     "4 KiB write + fdatasync p99 (us)", disk["sync_write_latency_us"]["p99"]),
    ("e2e unthrottled (msgs/s)", e2e_max["messages_per_s"],
     "produce 1 KiB alone (msgs/s)", produce["messages_per_s"]),
    ("e2e p99 (us)", e2e["latency_us_p99"],
     "paced group commit p99 (us)", paced["latency_us"]["p99"]),
    ("e2e p50 (us)", e2e["latency_us_p50"],
     "paced group commit p50 (us)", paced["latency_us"]["p50"]),
]
print(f"{'cluster':<28} {'value':>10}   {'disk baseline':<34} {'value':>10}   "
      f"{'cluster/disk':>12}")
for name, value, baseline_name, baseline in rows:
    ratio = f"{value / baseline:.3f}" if baseline else "n/a"
    print(f"{name:<28} {value:>10.1f}   {baseline_name:<34} {baseline:>10.1f}   {ratio:>12}")
PY
echo "results in $results"
rm -rf "$work/data" "$work/acked.ledger"
