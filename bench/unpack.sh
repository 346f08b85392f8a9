#!/usr/bin/env bash
# Unpacking against `zstd -dc | tar -x` on the same layer (issue 4):
#  - a generated rootfs-sized tree (128 MB in 6,700 files) as one zstd
#    layer: imgtool unpack at most 1.2x the time of zstd | tar;
#  - 50,000 empty files in one layer: at most 2x GNU tar's time.
# umoci 0.6.0 (the issue's third contender) is not run yet: see the notes.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v zstd >/dev/null || { echo "bench/unpack.sh needs zstd: apt-get install -y zstd" >&2; exit 1; }
W=$(mktemp -d /var/tmp/imgtool-unpack-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
make -s build
go build -o "$W/mktree" ./internal/cmd/mktree
IMG="bin/imgtool --root $W/root --progress quiet"

# blob REF prints the path of the image's only layer blob in the store.
blob() {
	local d
	d=$($IMG inspect "$1" | grep -o '"digest": "sha256:[0-9a-f]*"' | sed -n 3p | grep -o '[0-9a-f]\{64\}')
	echo "$W/root/store/blobs/sha256/$d"
}

# race LABEL REF: best of 3 for each contender.
race() {
	local label=$1 ref=$2 b t_tar t_img best_tar=999 best_img=999
	b=$(blob "$ref")
	for i in 1 2 3; do
		rm -rf "$W/x" "$W/y" && mkdir "$W/x"
		/usr/bin/time -f %e -o "$W/t" sh -c "zstd -dc '$b' | tar -x -C '$W/x'"
		t_tar=$(cat "$W/t")
		/usr/bin/time -f %e -o "$W/t" $IMG unpack "$ref" "$W/y"
		t_img=$(cat "$W/t")
		best_tar=$(echo "$t_tar $best_tar" | awk '{print ($1<$2)?$1:$2}')
		best_img=$(echo "$t_img $best_img" | awk '{print ($1<$2)?$1:$2}')
	done
	echo "$label $best_tar $best_img" | awk '{r=$3/($2>0?$2:0.01); printf "%-22s zstd|tar %5.2f s  imgtool %5.2f s  ratio %.2fx\n", $1, $2, $3, r}'
}

"$W/mktree" -dir "$W/rootfs" -files 6700 -bytes 134217728
$IMG import "$W/rootfs" -t bench/rootfs:1 >/dev/null
mkdir -p "$W/empty"
(cd "$W/empty" && for d in $(seq 0 49); do mkdir "d$d"; (cd "d$d" && seq -f "f%g" 0 999 | xargs touch); done)
$IMG import "$W/empty" -t bench/empty:1 >/dev/null
race "rootfs(128MB,6700)" bench/rootfs:1 | sed 's/$/ (target <= 1.2x)/'
race "50000-empty-files" bench/empty:1 | sed 's/$/ (target <= 2x)/'
