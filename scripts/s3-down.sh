#!/usr/bin/env bash
# s3-down.sh - stops what s3-up.sh started, by the PIDs it recorded in
# $S3_DIR/pids (never by process name), newest first, and deletes $S3_DIR.
#   S3_DIR     as given to s3-up.sh (default /tmp/imgtool-s3)
#   S3_KEEP=1  keep $S3_DIR (its logs) after stopping
set -uo pipefail
S3_DIR=${S3_DIR:-/tmp/imgtool-s3}
log() { printf '[s3-down] %s\n' "$*" >&2; }

# ours pid name: whether pid still runs what was recorded. A PID file
# outlives its process and PIDs are reused: only such a process is signalled.
ours() {
	kill -0 "$1" 2>/dev/null || return 1
	case "$(cat "/proc/$1/comm" 2>/dev/null)" in
	ceph-mon | ceph-osd | radosgw | bash) return 0 ;;
	esac
	log "pid $1 is no longer $2; left alone"
	return 1
}

# stop name pid: SIGTERM, then SIGKILL if it still runs 10 s later.
stop() {
	local _
	ours "$2" "$1" || return 0
	log "stopping $1 (pid $2)"
	kill "$2" 2>/dev/null
	for _ in $(seq 1 100); do
		kill -0 "$2" 2>/dev/null || return 0
		sleep 0.1
	done
	if ours "$2" "$1"; then
		log "$1 (pid $2) still running after 10s: SIGKILL"
		kill -9 "$2" 2>/dev/null
	fi
}

# The watchdog first, unless it is the one calling.
if [ -s "$S3_DIR/watchdog.pid" ]; then
	w=$(cat "$S3_DIR/watchdog.pid")
	[ "$w" != "$PPID" ] && [ "$w" != "$$" ] && stop watchdog "$w"
	rm -f "$S3_DIR/watchdog.pid"
fi
if [ -f "$S3_DIR/pids" ]; then
	# Newest first, one at a time: the gateway waits on the OSD, and both
	# report to the mon as they go down.
	tac "$S3_DIR/pids" | while read -r name pid; do
		[ -n "$pid" ] && stop "$name" "$pid"
	done
	rm -f "$S3_DIR/pids"
else
	log "no $S3_DIR/pids: nothing to stop"
fi
# Only a directory that s3-up.sh made (it holds its ceph.conf) is deleted.
if [ "${S3_KEEP:-0}" != 1 ] && [ -e "$S3_DIR/ceph.conf" ]; then
	rm -rf "$S3_DIR"
fi
