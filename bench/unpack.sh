#!/usr/bin/env bash
# Unpacking against `zstd -dc | tar -x` on the same layer (issue 4):
#  - a generated rootfs-sized tree (128 MB in 6,700 files) as one zstd
#    layer: imgtool unpack at most 1.2x the time of zstd | tar;
#  - 50,000 empty files in one layer: at most 2x GNU tar's time.
#  - at least 3x faster than umoci 0.6.0's rootless unpack (built here
#    from the Go module proxy: Debian's 0.4.7 reads no zstd).
#  - the unpack cache: a second materialisation of the rootfs-sized image
#    (a cache hit) at least 10x faster than the first unpack into the
#    cache; hard-linked and copied clones of the cached tree beside them,
#    and the first unpack synced before publishing (first-synced: what
#    happens without a boot ID, and what every first unpack cost before
#    chains were marked with the boot instead).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v zstd >/dev/null || { echo "bench/unpack.sh needs zstd: apt-get install -y zstd" >&2; exit 1; }
W=$(mktemp -d /var/tmp/imgtool-unpack-bench.XXXXXX)
trap 'chmod -R u+w "$W" 2>/dev/null; rm -rf "$W"' EXIT
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

# race LABEL REF: three rounds in which the contenders take turns going
# first, second and third; prints each one's best and median wall time
# and median CPU time (user+sys), and the ratios of the best times.
#
# Fairness: every run extracts into a directory of its own, synced before
# the next run starts, and the trees are removed only when the script
# exits. This script used to remove the previous round's trees right
# before timing tar, and tar paid for it: on an ext4 without a journal
# (as /var/tmp was where it ran), creating an inode skips every free inode
# of its group deleted in the last 5 s, or 300 s while its inode-table
# block is dirty, with a buffer-cache lookup each (fs/ext4/ialloc.c,
# recently_deleted), so 50,000 creates right after removing 150,000 files
# cost GNU tar 22 s, nearly all system time. On a scratch ext4 without a
# journal, tar of the 50,000 empty files took 1.9 s of system time on a
# fresh file system and 30 s right after an rm -rf of 100,000 files. Other
# processes removing files on the same file system can still slow every
# contender alike; a journaled ext4 (or XFS, btrfs) has no such scan.
race() {
	local label=$1 ref=$2 b i c order
	b=$(blob "$ref")
	$IMG push "$ref" "oci:$W/layout:$label" >/dev/null
	: >"$W/times"
	for i in 1 2 3; do
		case $i in 1) order="tar imgtool umoci" ;; 2) order="imgtool umoci tar" ;; 3) order="umoci tar imgtool" ;; esac
		for c in $order; do
			local out="$W/out/$label-$c-$i"
			mkdir -p "$W/out"
			sync
			case $c in
			tar) mkdir "$out" && /usr/bin/time -f "tar %e %U %S" -a -o "$W/times" sh -c "zstd -dc '$b' | tar -x -C '$out'" ;;
			imgtool) /usr/bin/time -f "imgtool %e %U %S" -a -o "$W/times" $IMG unpack "$ref" "$out" ;;
			umoci) /usr/bin/time -f "umoci %e %U %S" -a -o "$W/times" "$W/umoci" unpack --rootless --image "$W/layout:$label" "$out" >/dev/null ;;
			esac
		done
	done
	awk -v label="$label" '
		{ n[$1]++; w[$1, n[$1]] = $2; c[$1, n[$1]] = $3 + $4 }
		function sorted(a, k,   i, j, t, m) { m = n[k]; for (i = 1; i <= m; i++) v[i] = a[k, i]
			for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t } }
		function best(a, k) { sorted(a, k); return v[1] }
		function median(a, k,   m) { sorted(a, k); m = n[k]; return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2 }
		END {
			t = best(w, "tar"); i = best(w, "imgtool"); u = best(w, "umoci")
			printf "%-18s zstd|tar %5.2f s  imgtool %5.2f s  umoci-0.6.0 %5.2f s  imgtool/tar %.2fx  umoci/imgtool %.1fx", label, t, i, u, i / (t > 0 ? t : 0.01), u / (i > 0 ? i : 0.01)
			printf "  (medians %.2f / %.2f / %.2f s; CPU %.2f / %.2f / %.2f s)", median(w, "tar"), median(w, "imgtool"), median(w, "umoci"), median(c, "tar"), median(c, "imgtool"), median(c, "umoci")
		}' "$W/times"
}

"$W/mktree" -dir "$W/rootfs" -files 6700 -bytes 134217728
$IMG import "$W/rootfs" -t bench/rootfs:1 >/dev/null
mkdir -p "$W/empty"
(cd "$W/empty" && for d in $(seq 0 49); do mkdir "d$d"; (cd "d$d" && seq -f "f%g" 0 999 | xargs touch); done)
$IMG import "$W/empty" -t bench/empty:1 >/dev/null
race rootfs-128MB bench/rootfs:1 && echo " (targets: imgtool/tar <= 1.2x, umoci/imgtool >= 3x)"
race empty-50000 bench/empty:1 && echo " (target: imgtool/tar <= 2x)"

# cache: the mean of 5 runs of each BenchmarkRootfs case on the same tree,
# after the races' trees are on disk (their writeback would otherwise
# slow the first runs and the syncs).
sync
UNPACK_BENCH_TREE="$W/rootfs" go test ./unpack -run '^$' -bench '^BenchmarkRootfs$' -benchtime 5x -count 1 |
	awk '$1 ~ /^BenchmarkRootfs\// { split($1, n, "/"); sub(/-[0-9]+$/, "", n[2]); t[n[2]] = $3 / 1e9 }
	END {
		printf "cache-rootfs-128MB first %.3f s  hit %.6f s  clone-hardlink %.3f s  clone-copy %.3f s  first-synced %.3f s\n", t["first"], t["hit"], t["clone-hardlink"], t["clone-copy"], t["first-synced"]
		printf "                   first/hit %.0fx  first/clone-hardlink %.1fx  first/clone-copy %.1fx (target: first/hit >= 10x)\n", t["first"]/t["hit"], t["first"]/t["clone-hardlink"], t["first"]/t["clone-copy"]
	}'
