#!/usr/bin/env bash
# imgtool registry serve against distribution v3.1.2 (built here from the
# Go module proxy, tracing off) and Debian's docker-registry 2.8, side by
# side, each on a fresh directory on 127.0.0.1 with access logs off:
#  - push then pull BLOBS blobs of BLOB_SIZE bytes (default 8 x 128 MiB),
#    8 at a time (POST, streamed PATCH, PUT, as docker pushes); the push
#    runs PUSH_ROUNDS times (default 3) with new blobs each time and the
#    best round counts, since the disk and the host's other tenants make
#    single rounds vary by a third here;
#  - push IMAGES small images (16 KiB layer, config, manifest by tag)
#    with 8 and then 16 concurrent clients;
#  - HEAD a manifest by tag on 32 connections for HEAD_SECONDS.
# The push phase also runs against a minimal server (internal/cmd/regmin)
# that only hashes, writes and fsyncs each blob: on tmpfs the floor of CPU
# per pushed byte; on a disk, what a server gains by writing behind.
# Prints throughput, server CPU per operation, and imgtool's ratios, then
# what the disk takes when dd writes and fsyncs the push's bytes itself.
# BENCH_DIR (default /var/tmp) holds the servers' storage: /dev/shm takes
# the disk out and leaves the CPU as the bound.
#
#   bash bench/registry.sh
#   BENCH_DIR=/dev/shm bash bench/registry.sh
#   BLOBS=2 BLOB_SIZE=16777216 IMAGES=50 HEAD_SECONDS=3 bash bench/registry.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BLOBS=${BLOBS:-8}
BLOB_SIZE=${BLOB_SIZE:-134217728}
IMAGES=${IMAGES:-200}
HEAD_SECONDS=${HEAD_SECONDS:-10}
PUSH_ROUNDS=${PUSH_ROUNDS:-3}

command -v docker-registry >/dev/null || {
	echo "bench/registry.sh needs Debian's docker-registry: apt-get install -y docker-registry" >&2
	exit 1
}
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/imgtool-registry-bench.XXXXXX")
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT

make -s build
go build -o "$W/regload" ./internal/cmd/regload
go build -o "$W/regmin" ./internal/cmd/regmin
echo "building distribution v3.1.2's registry (slow the first time) ..." >&2
GOBIN=$W go install github.com/distribution/distribution/v3/cmd/registry@v3.1.2
TICK=$(getconf CLK_TCK)

. bench/ports.sh

# start NAME: a fresh server; sets pid and REG.
start() {
	local dir="$W/$1" port
	mkdir -p "$dir"
	port=$(free_port 15200 15300)
	case $1 in
	imgtool)
		bin/imgtool --root "$dir" registry serve --addr 127.0.0.1:"$port" --access-log=false >"$dir.log" 2>&1 &
		;;
	minimal)
		"$W/regmin" -addr 127.0.0.1:"$port" -dir "$dir" 2>"$dir.log" &
		;;
	distribution-3.1.2 | docker-registry-2.8)
		cat >"$dir.yml" <<-YML
			version: 0.1
			log: {level: error, accesslog: {disabled: true}}
			storage: {filesystem: {rootdirectory: $dir}, delete: {enabled: true}}
			http: {addr: 127.0.0.1:$port}
		YML
		if [ "$1" = docker-registry-2.8 ]; then
			docker-registry serve "$dir.yml" >"$dir.log" 2>&1 &
		else
			OTEL_TRACES_EXPORTER=none "$W/registry" serve "$dir.yml" >"$dir.log" 2>&1 &
		fi
		;;
	esac
	pid=$!
	REG=127.0.0.1:$port
	wait_port "$port"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }

# phase SERVER LABEL ARGS...: runs regload, appends "server label ops secs bytes cpu_secs".
phase() {
	local server=$1 label=$2 before after out
	shift 2
	sync
	before=$(cpu_ticks)
	out=$("$W/regload" -reg "$REG" "$@")
	after=$(cpu_ticks)
	echo "$server $label $out $(awk -v t=$((after - before)) -v hz="$TICK" 'BEGIN{print t/hz}')" >>"$W/results"
}

# push_rounds SERVER: the blob-push phase, PUSH_ROUNDS times over
# distinct blobs (the first round's are the ones blob-pull reads back).
push_rounds() {
	local r
	for r in $(seq 0 $((PUSH_ROUNDS - 1))); do
		phase "$1" blob-push -mode blobs-push -n "$BLOBS" -size "$BLOB_SIZE" -c 8 -first $((r * BLOBS))
	done
}

: >"$W/results"
for server in imgtool distribution-3.1.2 docker-registry-2.8; do
	echo "benchmarking $server ..." >&2
	start "$server"
	push_rounds "$server"
	phase "$server" blob-pull -mode blobs-pull -n "$BLOBS" -size "$BLOB_SIZE" -c 8
	phase "$server" images-c8 -mode images -n "$IMAGES" -c 8 -repo bench/c8
	phase "$server" images-c16 -mode images -n "$IMAGES" -c 16 -repo bench/c16
	phase "$server" head-c32 -mode head -c 32 -duration "${HEAD_SECONDS}s" -repo bench/head
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	pid=""
	rm -rf "${W:?}/$server"
done

# The minimal server: only what any registry that verifies and durably
# stores a pushed blob must do (internal/cmd/regmin).
echo "benchmarking minimal ..." >&2
start minimal
push_rounds minimal
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=""

# The ceiling for a durable push here: BLOBS files of BLOB_SIZE written by
# dd at once and fsync'd, as each server fsyncs a blob before it answers.
sync
disk_start=$(date +%s.%N)
for i in $(seq "$BLOBS"); do
	dd if=/dev/zero of="$W/dd.$i" bs=1M count=$((BLOB_SIZE >> 20)) conv=fsync status=none &
done
wait
disk_secs=$(awk -v a="$disk_start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
rm -f "$W"/dd.*

awk '
{ server=$1; phase=$2; ops=$3; secs=$4; bytes=$5; cpu=$6
  if (bytes > 0 && phase ~ /^blob/) { rate = bytes/1e6/secs; unit = "MB/s" } else { rate = ops/secs; unit = "op/s" }
  k = server SUBSEP phase
  rounds[k]++
  if (!(k in r) || rate > r[k]) { r[k] = rate; c[k] = 1000*cpu/ops }
  if (!(k in seen)) { seen[k] = 1; keys[++nk] = k; units[k] = unit }
  if (!(phase in phases)) { phases[phase] = 1; order[++n] = phase } }
END {
  for (i = 1; i <= nk; i++) { k = keys[i]; split(k, sp, SUBSEP)
    best = rounds[k] > 1 ? sprintf("  (best of %d rounds)", rounds[k]) : ""
    printf "%-20s %-11s %10.1f %-4s  server CPU %8.3f ms/op%s\n", sp[1], sp[2], r[k], units[k], c[k], best }
  for (i = 1; i <= n; i++) { p = order[i]
    printf "%-11s imgtool/distribution-3.1.2 %.2fx   imgtool/docker-registry-2.8 %.2fx", p,
      r["imgtool", p]/r["distribution-3.1.2", p], r["imgtool", p]/r["docker-registry-2.8", p]
    if (r["minimal", p] > 0)
      printf "   imgtool/minimal %.2fx   minimal/distribution-3.1.2 %.2fx", r["imgtool", p]/r["minimal", p], r["minimal", p]/r["distribution-3.1.2", p]
    printf "\n" }
}' "$W/results" >&2
awk -v n="$BLOBS" -v size="$BLOB_SIZE" -v secs="$disk_secs" 'BEGIN {
  printf "disk ceiling: %d parallel fsync'"'"'d dd writes of the push'"'"'s size, %.1f MB/s\n", n, n*size/1e6/secs }' >&2
