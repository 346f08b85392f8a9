#!/usr/bin/env bash
# Push and pull throughput of imgtool against skopeo, side by side on the
# same image and the same registry build on 127.0.0.1, with peak RSS.
# Target (issue 2): imgtool >= 0.9x skopeo's throughput, and < 100 MiB RSS.
#
#   bash bench/transfer.sh                  # 8 layers x 128 MiB (1 GiB)
#   LAYERS=2 LAYER_SIZE=16777216 bash bench/transfer.sh
#   REGISTRY=imgtool bash bench/transfer.sh # imgtool registry serve instead
#                                           # of distribution's registry
set -euo pipefail
cd "$(dirname "$0")/.."
LAYERS=${LAYERS:-8}
LAYER_SIZE=${LAYER_SIZE:-134217728}
REGISTRY=${REGISTRY:-distribution}

need=""
command -v skopeo >/dev/null || need="$need skopeo"
[ -x /usr/bin/time ] || need="$need time"
[ "$REGISTRY" = distribution ] && ! command -v docker-registry >/dev/null && need="$need docker-registry"
if [ -n "$need" ]; then
	if [ "$(id -u)" = 0 ]; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
	else
		echo "bench/transfer.sh needs:$need; install with: sudo apt-get install -y$need" >&2
		exit 1
	fi
fi

W=$(mktemp -d /var/tmp/imgtool-bench.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT

make -s build
go build -o "$W/mkimage" ./internal/cmd/mkimage
IMGTOOL=$PWD/bin/imgtool

# start_registry starts a fresh registry with its own disk, so that no
# blob is already there for either tool, and sets REG to its address. (Not
# called in $(...): the PID must be recorded in this shell for cleanup.)
start_registry() {
	local dir="$W/reg-$1"
	if [ "$REGISTRY" = imgtool ]; then
		"$IMGTOOL" --root "$dir" registry serve --addr 127.0.0.1:0 --access-log=false >"$dir.addr" 2>"$dir.log" &
		pids+=($!)
		for _ in $(seq 100); do
			[ -s "$dir.addr" ] && break
			sleep 0.05
		done
		REG=$(head -1 "$dir.addr")
		return
	fi
	local port
	for port in $(seq 15000 15100); do
		(echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null || break
	done
	mkdir -p "$dir"
	cat >"$dir.yml" <<-YML
		version: 0.1
		log: {level: error}
		storage: {filesystem: {rootdirectory: $dir}, delete: {enabled: true}}
		http: {addr: 127.0.0.1:$port}
	YML
	docker-registry serve "$dir.yml" >"$dir.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do
		(echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
		sleep 0.05
	done
	REG=127.0.0.1:$port
}

# measure LABEL CMD...: runs CMD under /usr/bin/time, appends "label secs kib".
measure() {
	local label=$1
	shift
	sync
	/usr/bin/time -f "%e %M" -o "$W/time" "$@" >/dev/null 2>"$W/err" || { cat "$W/err" >&2; exit 1; }
	echo "$label $(cat "$W/time")" >>"$W/results"
}

forget_skopeo_cache() {
	rm -f /var/lib/containers/cache/blob-info-cache-v1.sqlite /var/lib/containers/cache/blob-info-cache-v1.boltdb \
		"$HOME/.local/share/containers/cache/blob-info-cache-v1.sqlite" "$HOME/.local/share/containers/cache/blob-info-cache-v1.boltdb"
}

echo "making a $LAYERS x $LAYER_SIZE byte image of random data ..." >&2
"$W/mkimage" -dir "$W/src" -ref localhost/bench:1 -layers "$LAYERS" -layer-size "$LAYER_SIZE" >/dev/null
BYTES=$(du -sb "$W/src/blobs" | cut -f1)
"$IMGTOOL" --root "$W/root" --progress quiet pull oci:"$W/src":localhost/bench:1 >/dev/null

: >"$W/results"
start_registry skopeo
R1=$REG
forget_skopeo_cache
measure "push skopeo" skopeo --insecure-policy copy -q --dest-tls-verify=false oci:"$W/src":localhost/bench:1 docker://"$R1"/bench/skopeo:1
start_registry imgtool
R2=$REG
measure "push imgtool" "$IMGTOOL" --root "$W/root" --progress quiet push localhost/bench:1 "$R2"/bench/imgtool:1
forget_skopeo_cache
measure "pull skopeo" skopeo --insecure-policy copy -q --src-tls-verify=false docker://"$R1"/bench/skopeo:1 oci:"$W/skopeo-pull":bench
measure "pull imgtool" "$IMGTOOL" --root "$W/root2" --progress quiet pull "$R2"/bench/imgtool:1

awk -v bytes="$BYTES" '
{ op=$1; tool=$2; secs=$3; kib=$4; mbs=bytes/1e6/(secs>0?secs:0.01)
  rate[op,tool]=mbs; rss[op,tool]=kib/1024
  printf "%-5s %-8s %7.2f s %9.1f MB/s %8.1f MiB peak RSS\n", op, tool, secs, mbs, kib/1024 }
END {
  for (i = 1; i <= 2; i++) {
    op = (i == 1 ? "push" : "pull")
    r = rate[op,"imgtool"]/rate[op,"skopeo"]
    printf "%s: imgtool/skopeo throughput %.2fx (target >= 0.9x): %s; imgtool peak RSS %.1f MiB (target < 100): %s\n",
      op, r, (r >= 0.9 ? "PASS" : "FAIL"), rss[op,"imgtool"], (rss[op,"imgtool"] < 100 ? "PASS" : "FAIL")
  }
}' "$W/results" >&2
echo "image: $LAYERS layers, $BYTES bytes of blobs; registry: $REGISTRY" >&2
