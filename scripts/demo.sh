#!/usr/bin/env bash
# make demo: the main job on built-in defaults. Imports testdata/hello as
# a small image, pushes it to a registry on 127.0.0.1, pulls it back into a
# fresh store and lists it. Everything happens under a temporary
# directory that is removed at the end; the registry is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
W=$(mktemp -d)
reg_pid=""
cleanup() {
	[ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null && wait "$reg_pid" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
IMGTOOL=$PWD/bin/imgtool

step() { printf '\n\033[1m$ %s\033[0m\n' "$*" >&2; "$@"; }

# imgtool's own registry, on a free port it prints; SIGTERM stops it.
"$IMGTOOL" --root "$W/registry" registry serve --addr 127.0.0.1:0 >"$W/addr" 2>"$W/registry.log" &
reg_pid=$!
for _ in $(seq 100); do [ -s "$W/addr" ] && break; sleep 0.05; done
REG=$(head -1 "$W/addr")
echo "registry listening on $REG" >&2

export IMGTOOL_ROOT=$W/root
export SOURCE_DATE_EPOCH=1700000000
step "$IMGTOOL" import testdata/hello -t "$REG/demo/hello:1" --change 'CMD ["/bin/cat", "/etc/motd"]'
step "$IMGTOOL" push "$REG/demo/hello:1"
step "$IMGTOOL" --root "$W/fresh" pull "$REG/demo/hello:1"
step "$IMGTOOL" --root "$W/fresh" images
step "$IMGTOOL" --root "$W/fresh" save -o "$W/hello.tar" "$REG/demo/hello:1"
echo "demo done: the image went to $REG and back, and into a docker archive" >&2
