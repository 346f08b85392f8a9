#!/usr/bin/env bash
# bench/run.sh: a warm `imgtool run IMAGE /bin/true` as an unprivileged
# user (uid 65534), side by side with
#   floor:  unshare --user --map-root-user --mount --pid --fork --mount-proc chroot ROOTFS /bin/true
#   crun:   crun run of the same rootfs as a bundle from `runc spec --rootless`
#   podman: rootless podman run --rm --network none of the same image
# in alternated rounds (ROUNDS, default 30), printing medians and ratios.
# BASE=<git revision> adds a column for imgtool built at that revision
# (with a data root of its own),
# for a before/after comparison in the same alternated run.
# FIFO=1 runs the timed rounds (only those) under SCHED_FIFO, so that on a
# machine shared with other work the columns are timed as on a quiet one;
# podman's column stays SCHED_OTHER (podman and its cleanup process spin,
# under SCHED_FIFO, on work a normal process has to do).
#
# Needs root: it drops to uid 65534 itself, inside a private mount
# namespace with an empty read-only tmpfs over /sys/fs/cgroup/unified,
# because crun refuses to start on hybrid cgroup hosts otherwise (imgtool
# uses no cgroups and needs no such thing). Installs Debian's crun, runc
# and podman when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-30}
if [ "$(id -u)" != 0 ]; then
	echo "bench/run.sh: run it as root; it drops to uid 65534 for the measurements" >&2
	exit 1
fi
for p in crun runc podman; do
	if ! command -v "$p" >/dev/null; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq crun runc podman >/dev/null
		break
	fi
done

W=$(mktemp -d /tmp/imgtool-bench-run.XXXXXX)
cleanup() {
	# podman leaves a pause process holding its user namespace.
	if [ -f "$W/run/libpod/tmp/pause.pid" ]; then
		kill "$(cat "$W/run/libpod/tmp/pause.pid")" 2>/dev/null || true
	fi
	rm -rf "$W"
}
trap cleanup EXIT
chmod 755 "$W"
export PATH=/usr/local/go/bin:$PATH
# Built as `make build` does: static, with the small container init embedded.
sh scripts/build.sh "$W/imgtool"
base=()
if [ -n "${BASE:-}" ]; then
	mkdir "$W/base-src"
	git archive "$BASE" | tar -x -C "$W/base-src"
	if [ -f "$W/base-src/scripts/build.sh" ]; then
		(cd "$W/base-src" && sh scripts/build.sh "$W/imgtool-base")
	else
		(cd "$W/base-src" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$W/imgtool-base" ./cmd/imgtool)
	fi
	rm -rf "$W/base-src"
	# Its own data root (a copy, made below, once the image is in): two
	# builds whose container inits differ would each replace the other's
	# under cache/runner-init on every run, and time that instead.
	base=("base=$W/imgtool-base --root $W/root-base run bench:1 /bin/true")
fi
go build -o "$W/alternate" ./internal/cmd/alternate

mkdir -p "$W/src/bin" "$W/src/etc" "$W/run" "$W/bundle"
cp /bin/busybox "$W/src/bin/"
for a in sh true; do ln -s busybox "$W/src/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$W/src/etc/passwd"
chown -R 65534:65534 "$W"
nobody() {
	setpriv --reuid 65534 --regid 65534 --clear-groups \
		env HOME="$W" XDG_RUNTIME_DIR="$W/run" PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"
}
img() { nobody "$W/imgtool" --root "$W/root" --progress quiet "$@"; }
img import "$W/src" -t bench:1 >/dev/null
img unpack bench:1 "$W/bundle/rootfs" 2>/dev/null
(cd "$W/bundle" && nobody runc spec --rootless)
sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"\/bin\/true"/' "$W/bundle/config.json"
img save -o "$W/bench.tar" bench:1 >/dev/null
if [ ${#base[@]} -gt 0 ]; then
	cp -a "$W/root" "$W/root-base"
fi
nobody podman load -q -i "$W/bench.tar" >/dev/null 2>&1
# Its pause process was made outside the masked mount namespace: the
# measured runs must make their own inside it.
kill "$(cat "$W/run/libpod/tmp/pause.pid")" 2>/dev/null || true

rt=() podman_rt=""
if [ "${FIFO:-}" = 1 ]; then
	rt=(chrt --fifo 10) podman_rt="chrt --other 0"
fi
echo "warm run of /bin/true as uid 65534, $(nproc) cores, $(uname -r)${rt:+, SCHED_FIFO}"
"${rt[@]}" unshare --mount sh -c '
	mount -t tmpfs -o ro tmpfs /sys/fs/cgroup/unified
	W=$1 n=$2 P=$3
	shift 3
	exec setpriv --reuid 65534 --regid 65534 --clear-groups env HOME="$W" XDG_RUNTIME_DIR="$W/run" PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		"$W/alternate" -n "$n" -vs imgtool \
		floor="unshare --user --map-root-user --mount --pid --fork --mount-proc chroot $W/bundle/rootfs /bin/true" \
		imgtool="$W/imgtool --root $W/root run bench:1 /bin/true" \
		crun="crun --root $W/crun run --bundle $W/bundle bench" \
		podman="$P podman run --rm --network none bench:1 /bin/true" "$@"
' sh "$W" "$ROUNDS" "$podman_rt" "${base[@]}" 2>&1 | grep -v 'level=\(warning\|error\)'
echo "targets: imgtool at most 3x floor (floor ratio >= 0.33), at most 0.75x crun (crun ratio >= 1.33), podman ratio >= 10"
