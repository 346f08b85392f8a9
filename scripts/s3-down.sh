#!/usr/bin/env bash
# s3-down.sh - stops what s3-up.sh started, by the PIDs it recorded in
# $S3_DIR/pids (never by process name), newest first, and deletes $S3_DIR.
#   S3_DIR     as given to s3-up.sh (default /tmp/imgtool-s3)
#   S3_KEEP=1  keep $S3_DIR (its logs) after stopping
set -uo pipefail
S3_DIR=${S3_DIR:-/tmp/imgtool-s3}
log() { printf '[s3-down] %s\n' "$*" >&2; }

# stop pid name: SIGTERM, then SIGKILL after 10 s.
stop() {
	local pid=$1 name=$2 _
	kill -0 "$pid" 2>/dev/null || return 0
	# A PID file outlives its process, and PIDs are reused: only signal a
	# process that still runs the program recorded.
	case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
	ceph-mon | ceph-osd | radosgw | bash | s3-watchdog) ;;
	*)
		log "pid $pid is no longer $name; left alone"
		return 0
		;;
	esac
	log "stopping $name (pid $pid)"
	kill "$pid" 2>/dev/null
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	log "$name (pid $pid) still running after 10s: SIGKILL"
	kill -9 "$pid" 2>/dev/null
}

# The watchdog first, unless it is the one calling.
if [ -s "$S3_DIR/watchdog.pid" ]; then
	w=$(cat "$S3_DIR/watchdog.pid")
	[ "$w" != "$PPID" ] && [ "$w" != "$$" ] && stop "$w" watchdog
	rm -f "$S3_DIR/watchdog.pid"
fi
if [ -f "$S3_DIR/pids" ]; then
	tac "$S3_DIR/pids" | while read -r name pid; do
		[ -n "$pid" ] && stop "$pid" "$name"
	done
	rm -f "$S3_DIR/pids"
else
	log "no $S3_DIR/pids: nothing to stop"
fi
# Only a directory that s3-up.sh made (it holds its ceph.conf) is deleted.
if [ "${S3_KEEP:-0}" != 1 ] && [ -e "$S3_DIR/ceph.conf" ]; then
	rm -rf "$S3_DIR"
fi
