#!/usr/bin/env bash
# imgtool build on a copy-heavy context (the BUILD-PEERS.md scenario:
# 20,000 files, 200 MB, `FROM scratch` + `COPY . /data`), cold and after a
# one-file change, against the floor of `tar | zstd -T0 -3 | sha256sum`
# over the same tree. The peers' figures on these 2-core machines
# (BuildKit cold ~10 s, floor ~1.2 s) are in shared/reference/BUILD-PEERS.md.
#
#   bash bench/build.sh
#   FILES=2000 BYTES=20000000 bash bench/build.sh
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${FILES:-20000}
BYTES=${BYTES:-209715200}

command -v zstd >/dev/null || { echo "bench/build.sh needs zstd (apt-get install -y zstd)" >&2; exit 1; }

W=$(mktemp -d /var/tmp/imgtool-build-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
make -s build
go build -o "$W/mktree" ./internal/cmd/mktree
"$W/mktree" -dir "$W/ctx" -files "$FILES" -bytes "$BYTES"
printf 'FROM scratch\nCOPY . /data\n' > "$W/ctx/Dockerfile"

secs() { local s=$(date +%s.%N); "$@" >/dev/null; echo "$(date +%s.%N) - $s" | bc; }

floor=$(secs sh -c "tar -C '$W/ctx' -cf - . | zstd -q -T0 -3 | sha256sum")
cold=$(secs bin/imgtool --root "$W/root" --progress quiet build -t bench:1 "$W/ctx")
echo changed > "$W/ctx/$(cd "$W/ctx" && find . -type f -name '*' | sed -n 2p)"
again=$(secs bin/imgtool --root "$W/root" --progress quiet build -t bench:1 "$W/ctx")
printf 'floor (tar | zstd -T0 | sha256sum)  %6.2f s\n' "$floor"
printf 'imgtool build, cold                  %6.2f s  (%.1fx the floor)\n' "$cold" "$(echo "$cold / $floor" | bc -l)"
printf 'imgtool build, one file changed      %6.2f s  (no build cache yet: a full rebuild)\n' "$again"
