#!/usr/bin/env bash
# bench/build-peers.sh: imgtool build side by side with its peers on the
# same machine, the same Dockerfiles and the same build context (issue 9's
# targets):
#   imgtool          bin/imgtool build --root <temp store>
#   buildah-overlay  Debian's buildah, rootless, --storage-driver overlay
#   buildah-vfs      the same with --storage-driver vfs
#   buildkit         buildkitd + buildctl built from the Go module proxy's
#                    source, rootless through rootlesskit, OCI worker,
#                    exporting an OCI layout (zstd, as imgtool writes)
# Cases (CASES):
#   scratch  FROM scratch + COPY . /data over a tree of FILES files, BYTES bytes
#   busybox  FROM a busybox image made here (no registry) + the same COPY +
#            RUN over what it copied
# Scenarios for each: cold (empty store, cache and state), no-change rebuild,
# rebuild after one changed file. It prints seconds (medians of RUNS), the
# peak RSS of each build process (GNU time; BuildKit's buildkitd too), the
# `tar | zstd -T0 | sha256sum` floor over the context, and imgtool's ratio
# to the fastest peer against the targets.
#
#   sudo make bench-build-peers
#   FILES=2000 BYTES=20000000 bash bench/build-peers.sh
#   PEERS="buildkit buildah-overlay" CASES=scratch RUNS=3 bash bench/build-peers.sh
#
# As root it installs what is missing from Debian (buildah, rootlesskit,
# uidmap, runc, time, zstd) and runs every tool as uid 65534 inside a
# private mount namespace where /etc/subuid and /etc/subgid gain a range for
# that uid if they lack one (bind mounts: the files themselves are never
# edited, and the change ends with the script) and where the cgroup2 mount
# of a hybrid cgroup host is masked, because crun, which buildah runs RUN
# with, refuses such hosts (imgtool uses no cgroup). As any other user it
# runs the tools as that user and says what is missing.
#
# BuildKit's binaries are built once (a few minutes) into BKBIN, default
# /var/tmp/imgtool-bench-bin/buildkit-$BUILDKIT_VERSION; `go install` of
# them is refused because BuildKit's go.mod has exclude directives. BuildKit
# times are buildctl's against a running buildkitd: its start is not counted.
# buildah keeps layers uncompressed in its storage; imgtool and BuildKit
# write zstd blobs.
#
# Knobs: FILES, BYTES, RUNS (1), PEERS, CASES, TIMEOUT (seconds a build may
# take, 1800), BUILDKIT_VERSION (v0.34.2), BKBIN, KEEP (leave the work
# directory with every log).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
FILES=${FILES:-20000}
BYTES=${BYTES:-209715200}
RUNS=${RUNS:-1}
PEERS=${PEERS:-buildah-overlay buildah-vfs buildkit}
CASES=${CASES:-scratch busybox}
TIMEOUT=${TIMEOUT:-1800}
BUILDKIT_VERSION=${BUILDKIT_VERSION:-v0.34.2}
BKBIN=${BKBIN:-/var/tmp/imgtool-bench-bin/buildkit-$BUILDKIT_VERSION}
BENCH_UID=65534

die() { echo "bench/build-peers.sh: $*" >&2; exit 1; }
for p in $PEERS; do
	case $p in buildah-overlay | buildah-vfs | buildkit) ;; *) die "unknown peer $p (want buildah-overlay, buildah-vfs, buildkit)" ;; esac
done
for c in $CASES; do
	case $c in scratch | busybox) ;; *) die "unknown case $c (want scratch, busybox)" ;; esac
done
case "$FILES$BYTES$RUNS$TIMEOUT" in *[!0-9]*) die "FILES, BYTES, RUNS and TIMEOUT are numbers" ;; esac
if [ "$FILES" -lt 2 ] || [ "$RUNS" -lt 1 ]; then die "want FILES >= 2 and RUNS >= 1"; fi
has_peer() { case " $PEERS " in *" $1"*) return 0 ;; esac; return 1; }

# missing_packages prints the Debian packages this run needs and lacks.
missing_packages() {
	local pkgs=()
	command -v zstd >/dev/null || pkgs+=(zstd)
	[ -x /usr/bin/time ] || pkgs+=(time)
	if has_peer buildah; then command -v buildah >/dev/null || pkgs+=(buildah); fi
	if has_peer buildkit; then
		command -v rootlesskit >/dev/null || pkgs+=(rootlesskit)
		command -v runc >/dev/null || pkgs+=(runc)
	fi
	if [ -n "$PEERS" ]; then command -v newuidmap >/dev/null || pkgs+=(uidmap); fi
	echo "${pkgs[@]}"
}

if [ "$(id -u)" = 0 ] && [ -z "${IMGTOOL_BENCH_NS:-}" ]; then
	need=$(missing_packages)
	if [ -n "$need" ]; then
		echo "installing $need" >&2
		# shellcheck disable=SC2086 # a list of package names
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
	fi
	exec env IMGTOOL_BENCH_NS=1 unshare --mount --propagation private bash "$0" "$@"
fi
need=$(missing_packages)
[ -z "$need" ] || die "install the Debian packages: $need (as root this script does)"

W=$(mktemp -d /var/tmp/imgtool-bench-peers.XXXXXX)
chmod 755 "$W"
BKPID='' MPID=''
# shellcheck disable=SC2317 # the EXIT trap runs it
cleanup() {
	local rc=$?
	if [ -n "$MPID" ]; then
		# shellcheck disable=SC2046 # a list of PIDs
		kill -TERM "$MPID" $(descendants "$MPID") 2>/dev/null || true
		wait "$MPID" 2>/dev/null || true
	fi
	if declare -F bk_stop >/dev/null; then bk_stop || true; fi
	if [ -n "${KEEP:-}" ]; then
		echo "KEEP: left $W" >&2
	elif [ "$(id -u)" = 0 ] || ! command -v buildah >/dev/null; then
		rm -rf "$W"
	else
		# Rootless stores hold files of subordinate ids.
		buildah unshare rm -rf "$W" 2>/dev/null || rm -rf "$W"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# as_user: the prefix that runs a command as the bench user, with a HOME,
# XDG_RUNTIME_DIR and TMPDIR of its own under $W.
mkdir -p "$W/home" "$W/xdg" "$W/tmp" "$W/log" "$W/bin" "$W/state"
chmod 700 "$W/xdg"
UENV=(env -i "USER=$(getent passwd "$BENCH_UID" | cut -d: -f1)" "HOME=$W/home" "XDG_RUNTIME_DIR=$W/xdg" "TMPDIR=$W/tmp" "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
if [ "$(id -u)" = 0 ]; then
	as_user=(setpriv --reuid "$BENCH_UID" --regid "$BENCH_UID" --clear-groups "${UENV[@]}")
	WHO="uid $BENCH_UID"
else
	UENV[2]="USER=$(id -un)"
	as_user=("${UENV[@]}")
	WHO="uid $(id -u)"
fi

# subids_root gives uid 65534 subordinate ids in this mount namespace only.
subids_root() {
	local f base start name
	name=$(getent passwd "$BENCH_UID" | cut -d: -f1)
	[ -n "$name" ] || die "uid $BENCH_UID has no name in the user database, which rootlesskit needs"
	for f in /etc/subuid /etc/subgid; do
		[ -e "$f" ] || die "$f is missing: create it (empty) and run again"
		grep -qE "^($name|$BENCH_UID):" "$f" && continue
		base=$(basename "$f")
		# Past every range already given, and high, so no real user's ids.
		start=$(awk -F: 'BEGIN { m = 1879048192 } NF == 3 && $2 + $3 > m { m = $2 + $3 } END { print m }' "$f")
		# By name: rootlesskit 1.1 maps a range twice when it matches by uid.
		{ cat "$f"; echo "$name:$start:65536"; } >"$W/$base"
		chmod 644 "$W/$base"
		mount --bind "$W/$base" "$f"
	done
	if mountpoint -q /sys/fs/cgroup/unified && [ "$(stat -f -c %T /sys/fs/cgroup)" != cgroup2fs ]; then
		mount -t tmpfs -o ro tmpfs /sys/fs/cgroup/unified
	fi
}
if [ -n "$PEERS" ]; then
	if [ "$(id -u)" = 0 ]; then
		subids_root
	else
		for f in /etc/subuid /etc/subgid; do
			grep -qE "^($(id -un)|$(id -u)):" "$f" 2>/dev/null ||
				die "rootless buildah and BuildKit need subordinate ids: as root, echo $(id -un):100000:65536 >> $f"
		done
	fi
fi

# build_buildkit builds buildkitd and buildctl from the module's source once.
build_buildkit() {
	if [ ! -x "$BKBIN/buildkitd" ] || [ ! -x "$BKBIN/buildctl" ]; then
		echo "building BuildKit $BUILDKIT_VERSION into $BKBIN (once)" >&2
		local dir tmp
		dir=$(cd "$W" && go mod download -json "github.com/moby/buildkit@$BUILDKIT_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
		[ -d "$dir" ] || die "go mod download github.com/moby/buildkit@$BUILDKIT_VERSION gave no directory"
		cp -r "$dir" "$W/buildkit-src"
		chmod -R u+w "$W/buildkit-src"
		mkdir -p "$(dirname "$BKBIN")"
		tmp=$(mktemp -d "$BKBIN.tmp.XXXXXX")
		(cd "$W/buildkit-src" && CGO_ENABLED=0 go build -trimpath \
			-ldflags "-X github.com/moby/buildkit/version.Version=$BUILDKIT_VERSION" -o "$tmp/" ./cmd/buildkitd ./cmd/buildctl)
		# A concurrent run may have won: either result is the same build.
		mv -T "$tmp" "$BKBIN" 2>/dev/null || rm -rf "$tmp"
		rm -rf "$W/buildkit-src"
	fi
	cp "$BKBIN/buildkitd" "$BKBIN/buildctl" "$W/bin/"
}

# descendants PID prints the processes below PID.
descendants() {
	ps -e -o pid=,ppid= | awk -v root="$1" '
		{ parent[$1] = $2 }
		END { found[root] = 1; do { n = 0; for (p in parent) if (!(p in found) && (parent[p] in found)) { found[p] = 1; n++ } } while (n > 0)
		      for (p in found) if (p != root) print p }'
}

BKMODE=rootless
# bk_start STATE starts a buildkitd on STATE/root and waits for it.
bk_start() {
	local st=$1
	BKSOCK=$st/buildkitd.sock
	# An empty config and a socket of its own: nothing of the host's.
	: >"$st/buildkitd.toml"
	local cmd=("$W/bin/buildkitd" --config "$st/buildkitd.toml" --root "$st/root" --addr "unix://$BKSOCK"
		--otel-socket-path "$st/otel.sock" --oci-worker=true --containerd-worker=false)
	if [ "$BKMODE" = rootless ]; then
		"${as_user[@]}" rootlesskit --state-dir "$st/rootlesskit" "${cmd[@]}" >"$st/buildkitd.log" 2>&1 &
	else
		"${cmd[@]}" >"$st/buildkitd.log" 2>&1 &
	fi
	BKPID=$!
	for _ in $(seq 120); do
		if [ -S "$BKSOCK" ] && bk_ctl debug workers >/dev/null 2>&1; then return 0; fi
		kill -0 "$BKPID" 2>/dev/null || break
		sleep 0.5
	done
	echo "buildkitd ($BKMODE) did not start; its log:" >&2
	tail -n 20 "$st/buildkitd.log" >&2
	bk_stop
	return 1
}
bk_ctl() {
	if [ "$BKMODE" = rootless ]; then "${as_user[@]}" "$W/bin/buildctl" --addr "unix://$BKSOCK" "$@"; else "$W/bin/buildctl" --addr "unix://$BKSOCK" "$@"; fi
}
# bk_rss prints buildkitd's peak RSS so far in KiB.
bk_rss() {
	local p
	for p in $BKPID $(descendants "$BKPID"); do
		if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = buildkitd ]; then
			awk '/^VmHWM:/ { print $2 }' "/proc/$p/status"
			return
		fi
	done
	echo -
}
bk_stop() {
	[ -n "$BKPID" ] || return 0
	local kids
	kids=$(descendants "$BKPID")
	kill -TERM "$BKPID" 2>/dev/null || true
	for _ in $(seq 60); do
		kill -0 "$BKPID" 2>/dev/null || break
		sleep 0.5
	done
	# shellcheck disable=SC2086 # a list of PIDs
	kill -KILL "$BKPID" $kids 2>/dev/null || true
	wait "$BKPID" 2>/dev/null || true
	BKPID=
}

# measure TOOL CASE SCENARIO RUN CMD... times CMD and appends
# "TOOL CASE SCENARIO RUN SECONDS RSS_KIB" to $W/results.
FAILED=0
measure() {
	local tool=$1 cas=$2 scen=$3 run=$4
	shift 4
	local log=$W/log/$tool-$cas-$scen-$run.log t0 t1 rc=0 secs rss
	t0=$(date +%s.%N)
	# In the background so that a signal to this script stops it at once.
	/usr/bin/time -f %M -o "$W/rss" timeout -k 10 "$TIMEOUT" "$@" >"$log" 2>&1 &
	MPID=$!
	wait "$MPID" || rc=$?
	MPID=
	t1=$(date +%s.%N)
	if [ "$rc" != 0 ]; then
		echo "$tool $cas $scen: failed (exit $rc); the end of its output:" >&2
		tail -n 15 "$log" >&2
		echo "$tool $cas $scen $run fail -" >>"$W/results"
		FAILED=1
		return 1
	fi
	secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	rss=$(tail -n 1 "$W/rss")
	echo "$tool $cas $scen $run $secs $rss" >>"$W/results"
	printf '  %-16s %-8s %-10s %7.2f s  %6d MiB\n' "$tool" "$cas" "$scen" "$secs" "$((rss / 1024))" >&2
}

echo "setting up in $W" >&2
make -s build
cp bin/imgtool "$W/bin/"
has_peer buildkit && build_buildkit
go run ./internal/cmd/mktree -dir "$W/ctx" -files "$FILES" -bytes "$BYTES"
CHANGED=d01/s0/f00001
[ -f "$W/ctx/$CHANGED" ] || die "mktree made no $CHANGED"
mkdir -p "$W/df/scratch" "$W/df/busybox"
printf 'FROM scratch\nCOPY . /data\n' >"$W/df/scratch/Dockerfile"
printf 'FROM bench-base\nCOPY . /data\nRUN find /data -type f | wc -l > /data-files && du -s /data > /data-size\n' >"$W/df/busybox/Dockerfile"

# The busybox base: a docker archive for imgtool and buildah, and the same
# unpacked as an OCI layout for BuildKit's oci-layout:// named context.
if case " $CASES " in *" busybox "*) true ;; *) false ;; esac then
	mkdir -p "$W/basefs/bin" "$W/basefs/etc" "$W/basefs/tmp" "$W/base-oci"
	cp /bin/busybox "$W/basefs/bin/"
	for a in sh find wc du cat ls true; do ln -s busybox "$W/basefs/bin/$a"; done
	echo 'root:x:0:0:root:/root:/bin/sh' >"$W/basefs/etc/passwd"
	echo 'root:x:0:' >"$W/basefs/etc/group"
	chmod 1777 "$W/basefs/tmp"
	bin/imgtool --root "$W/basestore" --progress quiet import "$W/basefs" -t bench-base:latest --compression gzip >/dev/null
	bin/imgtool --root "$W/basestore" --progress quiet save -o "$W/base.tar" bench-base:latest
	tar -C "$W/base-oci" -xf "$W/base.tar"
	BASEDIGEST=$(grep -o '"digest": *"sha256:[0-9a-f]*"' "$W/base-oci/index.json" | head -n 1 | grep -o 'sha256:[0-9a-f]*')
	rm -rf "$W/basestore" "$W/basefs"
fi
[ "$(id -u)" = 0 ] && chown -R "$BENCH_UID:$BENCH_UID" "$W"

# build_cmd TOOL CASE STATE prints nothing; it sets CMD to the build.
build_cmd() {
	local tool=$1 cas=$2 st=$3 df=$W/df/$2
	case $tool in
	imgtool)
		CMD=("${as_user[@]}" "$W/bin/imgtool" --root "$st/root" --progress quiet build -f "$df/Dockerfile" -t bench:1 "$W/ctx") ;;
	buildah-*)
		CMD=("${as_user[@]}" buildah --root "$st/root" --runroot "$st/runroot" --storage-driver "${tool#buildah-}"
			bud --layers --network host --pull=never -f "$df/Dockerfile" -t bench:1 "$W/ctx") ;;
	buildkit)
		local ctl=("$W/bin/buildctl")
		[ "$BKMODE" = rootless ] && ctl=("${as_user[@]}" "${ctl[@]}")
		CMD=("${ctl[@]}" --addr "unix://$BKSOCK" build --progress plain --frontend dockerfile.v0
			--local "context=$W/ctx" --local "dockerfile=$df"
			--output "type=oci,dest=$st/out,tar=false,compression=zstd")
		if [ "$cas" = busybox ]; then
			CMD+=(--oci-layout "base=$W/base-oci" --opt "context:bench-base=oci-layout://base@$BASEDIGEST")
		fi ;;
	esac
}

# prepare TOOL CASE STATE readies an empty state: the base image in the
# tool's store, BuildKit's daemon.
prepare() {
	local tool=$1 cas=$2 st=$3
	if [ "$cas" = busybox ]; then
		case $tool in
		imgtool) "${as_user[@]}" "$W/bin/imgtool" --root "$st/root" --progress quiet load -i "$W/base.tar" >/dev/null ;;
		buildah-*) "${as_user[@]}" buildah --root "$st/root" --runroot "$st/runroot" --storage-driver "${tool#buildah-}" \
			pull -q "docker-archive:$W/base.tar" >/dev/null ;;
		esac
	fi
	if [ "$tool" = buildkit ]; then
		bk_start "$st" && return 0
		[ "$(id -u)" = 0 ] && [ "$BKMODE" = rootless ] || return 1
		echo "rootless buildkitd failed here: BuildKit runs as root from now on" >&2
		BKMODE=rootful
		bk_start "$st"
	fi
}

# change_one rewrites one context file with new content.
change_one() { echo "changed for $1 at $(date +%s%N)" >"$W/ctx/$CHANGED"; }

# run_tool TOOL CASE RUN: cold, no-change and one-file-change builds.
run_tool() {
	local tool=$1 cas=$2 run=$3 st=$W/state/$1-$2-$3
	mkdir -p "$st"
	[ "$(id -u)" = 0 ] && chown "$BENCH_UID:$BENCH_UID" "$st"
	if ! prepare "$tool" "$cas" "$st" >"$W/log/$tool-$cas-prepare-$run.log" 2>&1; then
		echo "$tool $cas: setup failed:" >&2
		tail -n 15 "$W/log/$tool-$cas-prepare-$run.log" >&2
		echo "$tool $cas cold $run fail -" >>"$W/results"
		FAILED=1
		bk_stop
		rm -rf "$st"
		return 0
	fi
	build_cmd "$tool" "$cas" "$st"
	if measure "$tool" "$cas" cold "$run" "${CMD[@]}"; then
		measure "$tool" "$cas" nochange "$run" "${CMD[@]}" || true
		change_one "$tool-$cas-$run"
		measure "$tool" "$cas" onefile "$run" "${CMD[@]}" || true
	fi
	if [ "$tool" = buildkit ]; then
		echo "buildkitd $cas daemon $run 0 $(bk_rss)" >>"$W/results"
		bk_stop
	fi
	[ -n "${KEEP:-}" ] || rm -rf "$st"
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq "$RUNS"); do
	echo "run $run of $RUNS" >&2
	# The floor reads the whole context first, so every tool finds it in
	# the page cache.
	measure floor ctx floor "$run" "${as_user[@]}" sh -c "tar -C '$W/ctx' -cf - . | zstd -q -T0 -3 | sha256sum"
	# Even runs take the tools in reverse order, so that a load that
	# changes during a run weighs on each alike.
	order="imgtool $PEERS"
	[ $((run % 2)) = 1 ] || order=$(echo "$order" | tr ' ' '\n' | tac | tr '\n' ' ')
	for cas in $CASES; do
		for tool in $order; do
			run_tool "$tool" "$cas" "$run"
		done
	done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

versions() {
	"$W/bin/imgtool" version 2>/dev/null | head -n 1
	if has_peer buildah; then buildah --version; fi
	if has_peer buildkit; then "$W/bin/buildkitd" --version | cut -d' ' -f1-3; echo "BuildKit ran $BKMODE"; fi
}

echo
echo "imgtool build vs peers: $FILES files, $BYTES bytes; $(nproc) cores, $(uname -r); medians of $RUNS run(s); tools ran as $WHO"
echo "machine load average $LOAD0 at the start, $LOAD1 at the end (shared machine: figures are loaded unless both are near 0)"
versions | sed 's/^/  /'
awk -v peers="$PEERS" -v cases="$CASES" -f bench/build-peers.awk "$W/results"
exit "$FAILED"
