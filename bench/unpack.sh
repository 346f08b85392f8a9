#!/usr/bin/env bash
# Unpacking against `zstd -dc | tar -x` on the same layer (issue 4):
#  - a generated rootfs-sized tree (128 MB in 6,700 files) as one zstd
#    layer: imgtool unpack at most 1.2x the time of zstd | tar;
#  - 50,000 empty files in one layer: at most 2x GNU tar's time.
#  - at least 3x faster than umoci 0.6.0's rootless unpack (built here
#    from the Go module proxy: Debian's 0.4.7 reads no zstd).
#  - the unpack cache: a second materialisation of the rootfs-sized image
#    (a cache hit) at least 10x faster than the first unpack into the
#    cache; hard-linked and copied clones of the cached tree beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v zstd >/dev/null || { echo "bench/unpack.sh needs zstd: apt-get install -y zstd" >&2; exit 1; }
W=$(mktemp -d /var/tmp/imgtool-unpack-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
make -s build
go build -o "$W/mktree" ./internal/cmd/mktree
IMG="bin/imgtool --root $W/root --progress quiet"
# umoci 0.6.0's go.mod has replace directives, so `go install pkg@v0.6.0`
# refuses it: build it from its module source instead.
src=$(go mod download -json github.com/opencontainers/umoci@v0.6.0 | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
cp -r "$src" "$W/umoci-src" && chmod -R u+w "$W/umoci-src"
(cd "$W/umoci-src" && go build -o "$W/umoci" ./cmd/umoci)

# blob REF prints the path of the image's only layer blob in the store.
blob() {
	local d
	d=$($IMG inspect "$1" | grep -o '"digest": "sha256:[0-9a-f]*"' | sed -n 3p | grep -o '[0-9a-f]\{64\}')
	echo "$W/root/store/blobs/sha256/$d"
}

# race LABEL REF: best of 3 for each contender.
race() {
	local label=$1 ref=$2 b t best_tar=999 best_img=999 best_umoci=999
	b=$(blob "$ref")
	$IMG push "$ref" "oci:$W/layout:$label" >/dev/null
	for i in 1 2 3; do
		rm -rf "$W/x" "$W/y" "$W/u" && mkdir "$W/x"
		/usr/bin/time -f %e -o "$W/t" sh -c "zstd -dc '$b' | tar -x -C '$W/x'"
		best_tar=$(awk -v b=$best_tar '{print ($1<b)?$1:b}' "$W/t")
		/usr/bin/time -f %e -o "$W/t" $IMG unpack "$ref" "$W/y"
		best_img=$(awk -v b=$best_img '{print ($1<b)?$1:b}' "$W/t")
		/usr/bin/time -f %e -o "$W/t" "$W/umoci" unpack --rootless --image "$W/layout:$label" "$W/u" >/dev/null
		best_umoci=$(awk -v b=$best_umoci '{print ($1<b)?$1:b}' "$W/t")
	done
	echo "$label $best_tar $best_img $best_umoci" | awk '{printf "%-18s zstd|tar %5.2f s  imgtool %5.2f s  umoci-0.6.0 %5.2f s  imgtool/tar %.2fx  umoci/imgtool %.1fx", $1, $2, $3, $4, $3/($2>0?$2:0.01), $4/($3>0?$3:0.01)}'
}

"$W/mktree" -dir "$W/rootfs" -files 6700 -bytes 134217728
$IMG import "$W/rootfs" -t bench/rootfs:1 >/dev/null
mkdir -p "$W/empty"
(cd "$W/empty" && for d in $(seq 0 49); do mkdir "d$d"; (cd "d$d" && seq -f "f%g" 0 999 | xargs touch); done)
$IMG import "$W/empty" -t bench/empty:1 >/dev/null
race rootfs-128MB bench/rootfs:1 && echo " (targets: imgtool/tar <= 1.2x, umoci/imgtool >= 3x)"
race empty-50000 bench/empty:1 && echo " (target: imgtool/tar <= 2x)"

# cache: the mean of 5 runs of each BenchmarkRootfs case on the same tree.
UNPACK_BENCH_TREE="$W/rootfs" go test ./unpack -run '^$' -bench '^BenchmarkRootfs$' -benchtime 5x -count 1 |
	awk '$1 ~ /^BenchmarkRootfs\// { split($1, n, "/"); sub(/-[0-9]+$/, "", n[2]); t[n[2]] = $3 / 1e9 }
	END {
		printf "cache-rootfs-128MB first %.3f s  hit %.6f s  clone-hardlink %.3f s  clone-copy %.3f s\n", t["first"], t["hit"], t["clone-hardlink"], t["clone-copy"]
		printf "                   first/hit %.0fx  first/clone-hardlink %.1fx  first/clone-copy %.1fx (target: first/hit >= 10x)\n", t["first"]/t["hit"], t["first"]/t["clone-hardlink"], t["first"]/t["clone-copy"]
	}'
