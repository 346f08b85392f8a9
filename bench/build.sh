#!/usr/bin/env bash
# imgtool build on a copy-heavy context (the BUILD-PEERS.md scenario:
# 20,000 files, 200 MB, `FROM scratch` + `COPY . /data`): cold, rebuilt
# with nothing changed, and after a one-file change, against the floor of
# `tar | zstd -T0 -3 | sha256sum` over the same tree. Wall and CPU
# seconds (user+sys: the figure to compare on a loaded machine) and peak
# RSS. The peers' figures on these 2-core machines (BuildKit cold ~10 s,
# no-change ~3.2 s, one-file 7-10 s; floor ~1.2 s) are in
# shared/reference/BUILD-PEERS.md; bench/build-peers.sh runs them side by
# side.
#
#   bash bench/build.sh
#   FILES=2000 BYTES=20000000 bash bench/build.sh
#   IMGTOOL_CPUPROFILE=/tmp/cpu.prof bash bench/build.sh   # then go tool pprof
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${FILES:-20000}
BYTES=${BYTES:-209715200}

command -v zstd >/dev/null || { echo "bench/build.sh needs zstd (apt-get install -y zstd)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench/build.sh needs GNU time (apt-get install -y time)" >&2; exit 1; }

W=$(mktemp -d /var/tmp/imgtool-build-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
make -s build
go build -o "$W/mktree" ./internal/cmd/mktree
"$W/mktree" -dir "$W/ctx" -files "$FILES" -bytes "$BYTES"
printf 'FROM scratch\nCOPY . /data\n' > "$W/ctx/Dockerfile"

# measure LABEL CMD...: one line of wall s, CPU s, peak RSS MiB.
measure() {
	local label=$1; shift
	/usr/bin/time -o "$W/time" -f '%e %U %S %M' "$@" >/dev/null
	read -r wall user sys rss < "$W/time"
	printf '%-36s %6.2f s wall %6.2f s CPU %5d MiB RSS\n' "$label" "$wall" "$(echo "$user + $sys" | bc)" $((rss / 1024))
}

measure 'floor (tar | zstd -T0 | sha256sum)' sh -c "tar -C '$W/ctx' -cf - . | zstd -q -T0 -3 | sha256sum"
build=(bin/imgtool --root "$W/root" --progress quiet build -t bench:1 "$W/ctx")
measure 'imgtool build, cold' "${build[@]}"
measure 'imgtool build, nothing changed' "${build[@]}"
echo changed > "$W/ctx/$(cd "$W/ctx" && find . -type f -name '*' | sed -n 2p)"
measure 'imgtool build, one file changed' "${build[@]}"
