#!/bin/sh
# scripts/build.sh OUT [VERSION]: builds imgtool as `make build` does, a
# static binary with the container init (internal/cmd/runner-init)
# embedded, so that `imgtool run` starts a 2 MB init instead of imgtool
# again. The init and a generated Go file that embeds it reach the
# package through `go build -overlay`, so nothing is written into the
# source tree and concurrent builds do not race.
set -eu
out=$1
version=${2:-dev}
GO=${GO:-go}
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 $GO build -trimpath -ldflags '-s -w' -o "$tmp/runner-init" ./internal/cmd/runner-init
digest=$(sha256sum "$tmp/runner-init" | cut -d' ' -f1)
cat >"$tmp/embed.go" <<EOF
package main

import _ "embed"

//go:embed runner-init
var embeddedRunnerInit []byte

func init() { runnerInit.exe, runnerInit.digest = embeddedRunnerInit, "$digest" }
EOF
pkg=$(pwd)/cmd/imgtool
printf '{"Replace":{"%s":"%s","%s":"%s"}}\n' \
	"$pkg/zz_runner_init.go" "$tmp/embed.go" "$pkg/runner-init" "$tmp/runner-init" >"$tmp/overlay.json"
CGO_ENABLED=0 $GO build -overlay "$tmp/overlay.json" -trimpath -ldflags "-s -w -X main.version=$version" -o "$out" ./cmd/imgtool
