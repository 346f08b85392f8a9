#!/usr/bin/env bash
# Layer writing against the tar | zstd pipeline (issue 3 targets):
#  - imgtool import of a 200 MB / 20,000-file tree, zstd default level:
#    >= 0.8x the throughput of `tar -cf - DIR | zstd -T0 -3 | sha256sum`,
#    peak RSS < 64 MiB;
#  - the gzip path >= 2x the standard library's gzip (Go benchmark).
#
#   bash bench/layer.sh                       # the issue's tree
#   FILES=2000 BYTES=20000000 bash bench/layer.sh
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${FILES:-20000}
BYTES=${BYTES:-209715200}

need=""
command -v zstd >/dev/null || need="$need zstd"
[ -x /usr/bin/time ] || need="$need time"
if [ -n "$need" ]; then
	if [ "$(id -u)" = 0 ]; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
	else
		echo "bench/layer.sh needs:$need; install with: sudo apt-get install -y$need" >&2
		exit 1
	fi
fi

W=$(mktemp -d /var/tmp/imgtool-layer-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
make -s build
go build -o "$W/mktree" ./internal/cmd/mktree
"$W/mktree" -dir "$W/tree" -files "$FILES" -bytes "$BYTES"
SIZE=$(du -sb "$W/tree" | cut -f1)
# Warm the page cache for both contenders alike.
tar -cf - -C "$W/tree" . >/dev/null

timed() { # LABEL CMD...: prints "LABEL secs kib"
	local label=$1
	shift
	/usr/bin/time -f "%e %M" -o "$W/time" "$@" >/dev/null 2>"$W/err" || { cat "$W/err" >&2; exit 1; }
	echo "$label $(cat "$W/time")"
}
{
	timed pipeline sh -c "tar -cf - -C '$W/tree' . | zstd -q -T0 -3 | sha256sum"
	timed imgtool bin/imgtool --root "$W/root" import "$W/tree" -t bench/layer:1
	timed imgtool-gzip bin/imgtool --root "$W/root" import --compression gzip "$W/tree" -t bench/layer:gzip
} >"$W/results"
awk -v bytes="$SIZE" '
{ secs[$1]=$2; rss[$1]=$3/1024; printf "%-13s %6.2f s %8.1f MB/s %7.1f MiB peak RSS\n", $1, $2, bytes/1e6/$2, $3/1024 }
END {
  r = secs["pipeline"]/secs["imgtool"]
  printf "zstd layer: imgtool/pipeline throughput %.2fx (target >= 0.8x): %s; peak RSS %.1f MiB (target < 64): %s\n",
    r, (r >= 0.8 ? "PASS" : "FAIL"), rss["imgtool"], (rss["imgtool"] < 64 ? "PASS" : "FAIL")
}' "$W/results"
echo "gzip path against the standard library (Go benchmark on the same tree):"
LAYER_BENCH_TREE="$W/tree" go test ./layer -run '^$' -bench 'Write/(gzip|stdlib-gzip)$' -benchtime 2x | awk '
/^BenchmarkWrite/ { name=$1; sub(/-[0-9]+$/, "", name); mbs[name]=$(NF-1); print }
END { r = mbs["BenchmarkWrite/gzip"]/mbs["BenchmarkWrite/stdlib-gzip"]; printf "gzip: %.1fx the standard library (target >= 2x): %s\n", r, (r >= 2 ? "PASS" : "FAIL") }'
echo "snapshot diff with 10 changed files against writing the whole layer (Go benchmarks):"
LAYER_BENCH_TREE="$W/tree" go test ./layer -run '^$' -bench '^BenchmarkDiff$|Write/zstd$' -benchtime 5x | awk '
/^Benchmark/ { name=$1; sub(/-[0-9]+$/, "", name); ns[name]=$3; print }
END { r = ns["BenchmarkDiff"]/ns["BenchmarkWrite/zstd"]; printf "diff: %.1f%% of a full layer write (target < 10%%): %s\n", 100*r, (r < 0.1 ? "PASS" : "FAIL") }'
echo "tree: $FILES files, $SIZE bytes"
