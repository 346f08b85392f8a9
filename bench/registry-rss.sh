#!/usr/bin/env bash
# Peak memory of imgtool registry serve under many big uploads at once:
# UPLOADS blobs of UPLOAD_SIZE bytes (default 64 x 256 MiB, 16 GiB on
# disk) all pushed at the same time (POST, streamed PATCH, PUT), then the
# server's peak RSS (VmHWM) is read. Target (issue 7): under 256 MiB.
# distribution v3.1.2 (tracing off) runs the same load after it for
# reference; PEER=none skips it.
#
#   bash bench/registry-rss.sh
#   UPLOADS=16 UPLOAD_SIZE=33554432 PEER=none bash bench/registry-rss.sh
set -euo pipefail
cd "$(dirname "$0")/.."
UPLOADS=${UPLOADS:-64}
UPLOAD_SIZE=${UPLOAD_SIZE:-268435456}
PEER=${PEER:-distribution-3.1.2}
TARGET_MIB=256

W=$(mktemp -d /var/tmp/imgtool-registry-rss.XXXXXX)
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT

need=$((UPLOADS * UPLOAD_SIZE / 1024 + 1048576))
if [ "$(df -Pk "$W" | awk 'NR == 2 {print $4}')" -lt "$need" ]; then
	echo "bench/registry-rss.sh needs $((need / 1048576)) GiB free under /var/tmp" >&2
	exit 1
fi

make -s build
go build -o "$W/regload" ./internal/cmd/regload
servers=(imgtool)
if [ "$PEER" = distribution-3.1.2 ]; then
	echo "building distribution v3.1.2's registry (slow the first time) ..." >&2
	GOBIN=$W go install github.com/distribution/distribution/v3/cmd/registry@v3.1.2
	servers+=("$PEER")
fi

. bench/ports.sh

for server in "${servers[@]}"; do
	echo "pushing $UPLOADS x $UPLOAD_SIZE bytes at once to $server ..." >&2
	dir=$W/$server
	mkdir -p "$dir"
	port=$(free_port 15300 15400)
	if [ "$server" = imgtool ]; then
		bin/imgtool --root "$dir" registry serve --addr 127.0.0.1:"$port" --access-log=false >"$dir.log" 2>&1 &
	else
		cat >"$dir.yml" <<-YML
			version: 0.1
			log: {level: error, accesslog: {disabled: true}}
			storage: {filesystem: {rootdirectory: $dir}, delete: {enabled: true}}
			http: {addr: 127.0.0.1:$port}
		YML
		OTEL_TRACES_EXPORTER=none "$W/registry" serve "$dir.yml" >"$dir.log" 2>&1 &
	fi
	pid=$!
	wait_port "$port"
	read -r ops secs bytes < <("$W/regload" -reg 127.0.0.1:"$port" -mode blobs-push -n "$UPLOADS" -size "$UPLOAD_SIZE" -c "$UPLOADS")
	# VmHWM is the peak resident set since the server's exec.
	peak=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	pid=""
	rm -rf "$dir"
	awk -v s="$server" -v n="$ops" -v t="$secs" -v b="$bytes" -v kb="$peak" -v target="$TARGET_MIB" 'BEGIN {
		verdict = ""
		if (s == "imgtool") verdict = (kb / 1024 < target) ? "  (target < " target " MiB: met)" : "  (target < " target " MiB: NOT met)"
		printf "%-20s %d uploads at once  %8.1f MB/s  peak RSS %7.1f MiB%s\n", s, n, b / 1e6 / t, kb / 1024, verdict
	}' >&2
done
