# imgtool — see README.md.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN      := bin/imgtool
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@latest

.PHONY: build test interop bench bench-build-peers lint demo deps fuzz clean

# scripts/build.sh embeds the container init (see internal/cmd/runner-init).
build:
	GO=$(GO) sh scripts/build.sh $(BIN) $(VERSION)

# deps installs what the tests need when run as root, and says what to
# install otherwise.
deps:
	@sh scripts/deps.sh

test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 10m -skip '^(TestConformance$$|TestS3|TestInterop)' ./...
	# Real clients against imgtool registry serve: crane, oras, podman and
	# containerd's ctr (the Go ones are built once into /var/tmp/imgtool-tools).
	$(GO) test -count=1 -timeout 10m -run '^TestInterop' -skip '^TestInteropCosign$$' -v ./cmd/imgtool
	# The official OCI conformance suite against imgtool registry serve,
	# verbose so that its pass count shows.
	$(GO) test -count=1 -timeout 5m -run '^TestConformance$$' -v ./cmd/imgtool
	# Two registry replicas over one bucket of a Ceph RADOS Gateway that
	# the tests start (scripts/s3-up.sh) and stop, conformance suite included.
	$(GO) test -count=1 -timeout 10m -run '^TestS3' -v ./cmd/imgtool
	# A short bounded fuzz of the layer applier, which faces hostile input:
	# bounded by executions (about 20 s here), because a -fuzztime given
	# as a duration can fail a clean run with "context deadline exceeded"
	# when it expires (a race in Go 1.26's fuzz coordinator, go.dev/issue/75804).
	$(GO) test ./unpack -run '^$$' -fuzz FuzzApply -fuzztime 12000x -fuzzminimizetime 200x

# interop runs every client interop test, cosign too: its first build
# takes about 10 minutes of CPU, too long for make test.
interop: deps
	$(GO) test -count=1 -timeout 30m -run '^TestInterop' -v ./cmd/imgtool

bench: build
	bash bench/transfer.sh
	bash bench/layer.sh
	bash bench/unpack.sh
	bash bench/run.sh
	bash bench/registry.sh
	bash bench/registry-rss.sh
	bash bench/build.sh

# bench-build-peers times imgtool build beside buildah and BuildKit (issue
# 9's targets). Not in bench: as root it installs Debian packages, builds
# BuildKit from source once, and a full run took 30 minutes on a busy 2-core machine.
# FILES, BYTES, RUNS, PEERS and CASES pass through (see bench/build-peers.sh).
bench-build-peers: build
	bash bench/build-peers.sh

# fuzz runs each fuzzer for FUZZTIME (the seeds also run in make test).
# Minimizing the archive fuzzer's finds is slow, hence the short bound.
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./manifest -run '^$$' -fuzz FuzzChildren -fuzztime $(FUZZTIME)
	$(GO) test ./store/transport -run '^$$' -fuzz FuzzArchive -fuzztime $(FUZZTIME) -fuzzminimizetime 1s
	$(GO) test ./unpack -run '^$$' -fuzz FuzzApply -fuzztime $(FUZZTIME) -fuzzminimizetime 1s
	$(GO) test ./registry -run '^$$' -fuzz FuzzHandler -fuzztime $(FUZZTIME)
	$(GO) test ./registry -run '^$$' -fuzz FuzzImport -fuzztime $(FUZZTIME) -fuzzminimizetime 1s
	$(GO) test ./build -run '^$$' -fuzz FuzzPlan -fuzztime $(FUZZTIME)
	$(GO) test ./registry -run '^$$' -fuzz FuzzParseHtpasswd -fuzztime $(FUZZTIME)
	$(GO) test ./cmd/imgtool -run '^$$' -fuzz FuzzParseConfig -fuzztime $(FUZZTIME)
	$(GO) test ./build -run '^$$' -fuzz FuzzCacheRecords -fuzztime $(FUZZTIME)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

demo: build
	bash scripts/demo.sh

clean:
	rm -rf bin
