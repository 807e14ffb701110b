#!/usr/bin/env bash
# Starts a three-broker Strata cluster on loopback (make cluster):
#   brokers     127.0.0.1:9092, 127.0.0.1:9192, 127.0.0.1:9292
#   controllers 127.0.0.1:9093, 127.0.0.1:9193, 127.0.0.1:9293 (all three vote)
# with data under ./strata-cluster/b0..b2. Ctrl-C stops all three. Stop or
# SIGKILL one broker (see the pids printed) to watch leadership move.
set -euo pipefail
bin=${STRATA_BIN:-./bin/strata}
dir=${STRATA_CLUSTER_DIR:-./strata-cluster}
voters="0@127.0.0.1:9093,1@127.0.0.1:9193,2@127.0.0.1:9293"
pids=()
stop() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait
}
trap stop INT TERM EXIT
for i in 0 1 2; do
	mkdir -p "$dir/b$i"
	"$bin" serve --node-id "$i" --listen "127.0.0.1:9${i}92" \
		--controller-listen "127.0.0.1:9${i}93" --controller-voters "$voters" \
		--data-dir "$dir/b$i" "$@" 2> >(sed -u "s/^/[broker $i] /" >&2) &
	pids+=($!)
	echo "broker $i: pid $! on 127.0.0.1:9${i}92 (data in $dir/b$i)"
done
echo "bootstrap servers: 127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292 (Ctrl-C stops the cluster)"
wait
