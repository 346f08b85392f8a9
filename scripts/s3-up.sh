#!/usr/bin/env bash
# s3-up.sh - a throw-away S3 service on 127.0.0.1 for testing imgtool's
# registry over S3: a one-node Ceph cluster (one mon, one OSD keeping its
# objects in memory, no mgr) and a RADOS Gateway, started without systemd the
# way Ceph's own vstart.sh does it. It creates an S3 user with fixed test
# keys and a bucket, and prints the settings as shell exports on stdout
# (everything else goes to stderr):
#
#   eval "$(scripts/s3-up.sh)"    # S3_ENDPOINT, S3_BUCKET, AWS_* ... are set
#   imgtool registry serve --storage s3 --s3-endpoint "$S3_ENDPOINT" \
#       --s3-bucket "$S3_BUCKET" --s3-path-style
#   scripts/s3-down.sh            # stops every daemon by PID, deletes the data
#
# Debian's ceph packages are installed when missing and run as root;
# otherwise the script names the command to run. Every wait is bounded; on
# any failure what was started is stopped again and the logs are kept.
#
# Settings (environment):
#   S3_DIR          data, logs, PIDs      (default /tmp/imgtool-s3; keep it short:
#                                          admin sockets live under it)
#   S3_PORT         RGW port              (default: a free port)
#   S3_MON_PORT     ceph-mon msgr2 port   (default: a free port)
#   S3_BUCKET       bucket to create      (default imgtool)
#   S3_ACCESS_KEY / S3_SECRET_KEY         (default: the fixed test keys below)
#   S3_OSD_STORE    OSD object store      (default memstore: in memory, gone at stop,
#                                          fast; bluestore: on a sparse file in S3_DIR)
#   S3_OSD_SIZE     OSD capacity          (default 4G; memory or disk is used only as written)
#   S3_OWNER_PID    when set, everything is stopped once this process exits
#                   (so a test killed by a timeout leaves no daemons behind)
#   S3_MAX_LIFETIME seconds after which that watchdog stops everything anyway
#                   (default 7200)
# PIDs: $S3_DIR/pids ("name pid" per line), read by s3-down.sh.
set -euo pipefail

S3_DIR=${S3_DIR:-/tmp/imgtool-s3}
S3_BUCKET=${S3_BUCKET:-imgtool}
S3_ACCESS_KEY=${S3_ACCESS_KEY:-IMGTOOLTESTACCESSKEY}
S3_SECRET_KEY=${S3_SECRET_KEY:-imgtoolTestSecretKey0000000000000000000}
S3_OSD_STORE=${S3_OSD_STORE:-memstore}
S3_OSD_SIZE=${S3_OSD_SIZE:-4G}
S3_REGION=us-east-1
S3_MAX_LIFETIME=${S3_MAX_LIFETIME:-7200}

HERE=$(cd "$(dirname "$0")" && pwd)
T0=$(date +%s)
log() { printf '[s3-up %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

# --- packages -------------------------------------------------------------
PKGS="ceph-mon ceph-osd radosgw ceph-common curl"
need=""
for pkg in $PKGS; do
	dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
done
if [ -n "$need" ]; then
	if [ "$(id -u)" != 0 ]; then
		log "the S3 tests need Ceph's Debian packages; install them with:"
		log "  sudo apt-get install -y --no-install-recommends$need"
		exit 1
	fi
	log "installing$need"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends $need >/dev/null ||
		die "apt-get install$need failed"
	log "installed in $(($(date +%s) - T0))s"
fi
T0=$(date +%s)

# --- ports ----------------------------------------------------------------
[ ! -e "$S3_DIR/pids" ] || die "$S3_DIR/pids exists: already running? run S3_DIR=$S3_DIR $HERE/s3-down.sh first"
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# free_port picks a port nobody listens on, from a range clear of the
# kernel's ephemeral ports (32768-60999 by default).
free_port() {
	local p _
	for _ in $(seq 1 50); do
		p=$((20000 + RANDOM % 12000))
		if ! port_busy "$p" && [ "$p" != "${1:-}" ]; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found between 20000 and 32000"
}
S3_PORT=${S3_PORT:-$(free_port)}
S3_MON_PORT=${S3_MON_PORT:-$(free_port "$S3_PORT")}
# radosgw only reports "failed to bind" seconds after it started, and a
# readiness probe would be answered by whoever holds the port: refuse busy
# ports up front.
for p in "$S3_PORT" "$S3_MON_PORT"; do
	port_busy "$p" && die "127.0.0.1:$p is already in use (set S3_PORT / S3_MON_PORT)"
done

# --- cleanup on failure ---------------------------------------------------
READY=0
cleanup() {
	local rc=$?
	if [ "$READY" != 1 ]; then
		log "failed (exit $rc); stopping what was started; logs kept in $S3_DIR/log"
		S3_DIR=$S3_DIR S3_KEEP=1 "$HERE/s3-down.sh" || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# S3_DIR is deleted and made anew: refuse a directory that is not ours.
if [ -d "$S3_DIR" ] && [ -n "$(ls -A "$S3_DIR")" ] && [ ! -e "$S3_DIR/ceph.conf" ]; then
	die "$S3_DIR is not empty and holds no ceph.conf of a previous run: set S3_DIR to another directory"
fi
rm -rf "$S3_DIR"
mkdir -p "$S3_DIR"/{mon.a,osd.0,run,log,crash}
: >"$S3_DIR/pids"
D=$(cd "$S3_DIR" && pwd)
CONF=$D/ceph.conf
FSID=$(cat /proc/sys/kernel/random/uuid)

# One OSD: pools of size 1, few placement groups, no autoscaler (it lives in
# the mgr, which is not started), msgr2 only, everything on 127.0.0.1. A
# keyring line under [global] would break the OSD's authentication, so the
# admin keyring is named under [client] only.
cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$S3_MON_PORT]
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind msgr2 = true
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
run dir = $D/run
crash dir = $D/crash
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
pid file = $D/run/\$name.pid
log to stderr = false
err to stderr = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 2
mon data avail crit = 1
mon osd full ratio = .99
mon osd nearfull ratio = .99
mon osd backfillfull ratio = .99
osd failsafe full ratio = .99
[client]
keyring = $D/keyring
[mon]
mon data = $D/mon.\$id
[osd]
osd data = $D/osd.\$id
osd objectstore = $S3_OSD_STORE
memstore device bytes = $S3_OSD_SIZE
bluestore block create = true
bluestore block size = $S3_OSD_SIZE
bluestore fsck on mount = false
osd memory target = 939524096
osd op num shards = 1
osd op num threads per shard = 2
[client.rgw.a]
keyring = $D/rgw.keyring
rgw frontends = beast endpoint=127.0.0.1:$S3_PORT tcp_nodelay=1
rgw thread pool size = 64
# One bucket index shard: listings (which the registry does for tags,
# deletes and resumable uploads) query every shard, 11 by default.
rgw override bucket index max shards = 1
EOF

# cephc runs the ceph CLI, bounded: it waits for the mon forever otherwise.
cephc() { timeout 60 ceph -c "$CONF" "$@"; }
record_pid() { # name pidfile: wait (bounded) for a daemon's PID file
	local _
	for _ in $(seq 1 100); do
		[ -s "$2" ] && break
		sleep 0.1
	done
	[ -s "$2" ] || die "$1 wrote no $2; see $D/log"
	echo "$1 $(cat "$2")" >>"$D/pids"
}
alive() { # name: fail fast when a recorded daemon has exited
	local pid
	pid=$(awk -v n="$1" '$1==n{print $2}' "$D/pids")
	kill -0 "$pid" 2>/dev/null || die "$1 (pid $pid) exited; see $D/log/"
}
# until_ok seconds daemon command...: retries command every half second
# until it succeeds, for at most that many seconds, and fails at once when
# the daemon it waits for has exited.
until_ok() {
	local limit=$((SECONDS + $1)) name=$2
	shift 2
	while [ "$SECONDS" -lt "$limit" ]; do
		"$@" && return 0
		alive "$name"
		sleep 0.5
	done
	return 1
}
osd_up() { timeout 10 ceph -c "$CONF" osd dump 2>/dev/null | grep -q '^osd.0 up'; }
rgw_up() { curl -s -m 2 -o /dev/null "http://127.0.0.1:$S3_PORT/"; }
# Daemons fork into the background; their output goes to log files, so
# that whoever reads this script's stdout sees its end.
daemon() { # name command...
	local name=$1
	shift
	"$@" </dev/null >>"$D/log/$name.out" 2>&1 || die "$name did not start; see $D/log/$name.out"
}

# --- watchdog ---------------------------------------------------------------
if [ -n "${S3_OWNER_PID:-}" ]; then
	kill -0 "$S3_OWNER_PID" 2>/dev/null || die "S3_OWNER_PID $S3_OWNER_PID is not running"
	# Detached, and with its own output closed, so it outlives nothing but
	# the owner (at most S3_MAX_LIFETIME seconds).
	setsid bash -c '
		for _ in $(seq 1 "$2"); do kill -0 "$1" 2>/dev/null || break; sleep 1; done
		S3_DIR=$3 exec "$4/s3-down.sh"
	' s3-watchdog "$S3_OWNER_PID" "$S3_MAX_LIFETIME" "$D" "$HERE" </dev/null >>"$D/log/watchdog.out" 2>&1 &
	echo $! >"$D/watchdog.pid"
fi

# --- mon ------------------------------------------------------------------
log "mon: mkfs and start on 127.0.0.1:$S3_MON_PORT"
ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$D/keyring" --gen-key -n client.admin \
	--cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
monmaptool --create --clobber --fsid "$FSID" --addv a "[v2:127.0.0.1:$S3_MON_PORT]" "$D/monmap" >/dev/null
daemon mon-mkfs ceph-mon -c "$CONF" --mkfs -i a --monmap "$D/monmap" --keyring "$D/keyring"
daemon mon.a ceph-mon -c "$CONF" -i a
record_pid mon.a "$D/run/mon.a.pid"
cephc mon stat >/dev/null || die "mon did not answer; see $D/log/mon.a.log"

# --- osd ------------------------------------------------------------------
log "osd: mkfs ($S3_OSD_STORE, $S3_OSD_SIZE) and start"
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
OSD_KEY=$(ceph-authtool --gen-print-key)
printf '{"cephx_secret": "%s"}\n' "$OSD_KEY" >"$D/osd-new.json"
OSD_ID=$(cephc osd new "$OSD_UUID" -i "$D/osd-new.json")
rm -f "$D/osd-new.json"
[ "$OSD_ID" = 0 ] || die "unexpected osd id '$OSD_ID'"
timeout 120 ceph-osd -c "$CONF" -i 0 --mkfs --key "$OSD_KEY" --osd-uuid "$OSD_UUID" \
	</dev/null >>"$D/log/osd-mkfs.out" 2>&1 || die "ceph-osd --mkfs failed; see $D/log/osd-mkfs.out and osd.0.log"
printf '[osd.0]\n\tkey = %s\n' "$OSD_KEY" >"$D/osd.0/keyring"
daemon osd.0 ceph-osd -c "$CONF" -i 0
record_pid osd.0 "$D/run/osd.0.pid"
until_ok 90 osd.0 osd_up || die "osd.0 not up after 90s; see $D/log/osd.0.log"

# --- rgw ------------------------------------------------------------------
log "rgw: start on 127.0.0.1:$S3_PORT"
cephc auth get-or-create client.rgw.a mon 'allow rw' osd 'allow rwx' -o "$D/rgw.keyring"
daemon rgw.a radosgw -c "$CONF" -n client.rgw.a
record_pid rgw.a "$D/run/client.rgw.a.pid"
until_ok 120 rgw.a rgw_up || die "rgw not answering after 120s; see $D/log/client.rgw.a.log"
alive rgw.a

log "rgw: S3 user and bucket $S3_BUCKET"
timeout 60 radosgw-admin -c "$CONF" -n client.admin user create --uid imgtool --display-name imgtool \
	--access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" >/dev/null ||
	die "radosgw-admin user create failed"
# curl's --aws-sigv4 sends no x-amz-content-sha256, without which RGW
# answers SignatureDoesNotMatch: send the hash of the empty body.
EMPTY_SHA=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
code=$(curl -s -m 30 -o "$D/log/mkbucket.out" -w '%{http_code}' -X PUT -H "x-amz-content-sha256: $EMPTY_SHA" \
	--user "$S3_ACCESS_KEY:$S3_SECRET_KEY" --aws-sigv4 "aws:amz:$S3_REGION:s3" \
	"http://127.0.0.1:$S3_PORT/$S3_BUCKET")
[ "$code" = 200 ] || die "creating bucket $S3_BUCKET: HTTP $code: $(cat "$D/log/mkbucket.out")"
alive rgw.a
READY=1
log "ready in $(($(date +%s) - T0))s"

cat <<EOF
export S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export S3_REGION=$S3_REGION
export S3_BUCKET=$S3_BUCKET
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export S3_DIR=$D
export CEPH_CONF=$CONF
EOF
