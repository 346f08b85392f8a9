#!/bin/sh
# scripts/build.sh OUT [VERSION]: builds imgtool as `make build` does, a
# static binary in two layers:
#  - the container init (internal/cmd/runner-init) is embedded,
#    zstd-compressed like the full binary below, so that `imgtool run`
#    and build's RUN steps start a 2 MB init instead of imgtool again;
#  - the binary is lean (-tags imgtool_lean): it does not link the
#    registry, whose packages (distribution's storage drivers, the AWS
#    SDK, prometheus, otel, grpc) cost every process ~12 ms of init, nor
#    the build package and BuildKit's parser (protobuf, gob: ~1 ms). The
#    full imgtool, built without the tag and with the init embedded too,
#    rides along zstd-compressed, and `imgtool registry|build|prune|import`
#    becomes it (see cmd/imgtool/full_lean.go and internal/embedexe).
# The embedded files and the generated Go files that embed them reach the
# package through `go build -overlay`, so nothing is written into the
# source tree and concurrent builds do not race. A plain
# `go build ./cmd/imgtool` gives the full binary without the init.
set -eu
out=$1
version=${2:-dev}
GO=${GO:-go}
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ldflags="-s -w -X main.version=$version"
pkg=$(pwd)/cmd/imgtool
CGO_ENABLED=0 $GO build -trimpath -ldflags '-s -w' -o "$tmp/runner-init" ./internal/cmd/runner-init
$GO build -o "$tmp/zstdpack" ./internal/cmd/zstdpack
"$tmp/zstdpack" "$tmp/runner-init" "$tmp/runner-init.zst"
init_digest=$(sha256sum "$tmp/runner-init" | cut -d' ' -f1)
init_size=$(wc -c <"$tmp/runner-init" | tr -d ' ')
cat >"$tmp/embed.go" <<GO
package main

import _ "embed"

//go:embed runner-init.zst
var embeddedRunnerInit []byte

func init() {
	runnerInit.Zstd, runnerInit.Digest, runnerInit.Size = embeddedRunnerInit, "$init_digest", $init_size
}
GO
printf '{"Replace":{"%s":"%s","%s":"%s"}}\n' \
	"$pkg/zz_runner_init.go" "$tmp/embed.go" "$pkg/runner-init.zst" "$tmp/runner-init.zst" \
	>"$tmp/overlay-full.json"
CGO_ENABLED=0 $GO build -overlay "$tmp/overlay-full.json" -trimpath -ldflags "$ldflags" -o "$tmp/imgtool-full" ./cmd/imgtool
"$tmp/zstdpack" "$tmp/imgtool-full" "$tmp/imgtool-full.zst"
full_digest=$(sha256sum "$tmp/imgtool-full" | cut -d' ' -f1)
full_size=$(wc -c <"$tmp/imgtool-full" | tr -d ' ')
cat >"$tmp/embed_full.go" <<GO
//go:build imgtool_lean

package main

import _ "embed"

//go:embed imgtool-full.zst
var embeddedFullExe []byte

func init() {
	fullExe.Zstd, fullExe.Digest, fullExe.Size = embeddedFullExe, "$full_digest", $full_size
}
GO
printf '{"Replace":{"%s":"%s","%s":"%s","%s":"%s","%s":"%s"}}\n' \
	"$pkg/zz_runner_init.go" "$tmp/embed.go" "$pkg/runner-init.zst" "$tmp/runner-init.zst" \
	"$pkg/zz_full_exe.go" "$tmp/embed_full.go" "$pkg/imgtool-full.zst" "$tmp/imgtool-full.zst" \
	>"$tmp/overlay.json"
CGO_ENABLED=0 $GO build -overlay "$tmp/overlay.json" -tags imgtool_lean -trimpath -ldflags "$ldflags" -o "$out" ./cmd/imgtool
