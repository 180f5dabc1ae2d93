# rootbox: build, demo, test, bench.  See README.md.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

CARGO ?= cargo
RELEASE := target/release
DEMO_ROOTFS := target/demo/busybox-rootfs
DEMO_STORE := target/demo/store

.PHONY: build demo test lint unit bench bench-network clean

## build: release binaries target/release/rootbox and target/release/rootbox-runtime
build:
	$(CARGO) build --release

## demo: import a tiny busybox image and run a container from it as the invoking user
demo: build
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	    && ! dpkg-query -W -f='$${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then \
	    echo "+ apt-get install busybox-static"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static </dev/null \
	    || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static </dev/null; }; \
	fi
	@if [ ! -x $(DEMO_ROOTFS)/bin/busybox ]; then \
	    rm -rf $(DEMO_ROOTFS); tests/lib/mk-busybox-rootfs.sh $(DEMO_ROOTFS); \
	fi
	@tar -C $(DEMO_ROOTFS) -cf target/demo/busybox.tar .
	@echo "+ rootbox import target/demo/busybox.tar busybox:demo   (store: $(DEMO_STORE))"
	@$(RELEASE)/rootbox --root $(DEMO_STORE) import target/demo/busybox.tar busybox:demo >/dev/null
	@echo "+ rootbox run --rm busybox:demo sh -c 'echo hello from \$$(hostname); echo pid=\$$\$$ uid=\$$(id -u)'"
	@$(RELEASE)/rootbox --root $(DEMO_STORE) run --rm busybox:demo sh -c 'echo hello from $$(hostname); echo pid=$$$$ uid=$$(id -u)'

## test: as root: set up the machine, lint, build, unit tests, integration tests as
##       the unprivileged user rbtest and as root; otherwise the same as yourself
test:
	tests/run.sh

## lint: rustfmt and clippy, warnings are errors
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --all-targets -- -D warnings

## unit: Rust unit tests only
unit:
	$(CARGO) test --release

## bench: rootbox side by side with its peers (ratios in bench/results/*.json):
##        start-to-exit of `true` (rootbox-runtime vs crun, runc, bwrap, unshare),
##        `run --rm IMAGE true` (rootbox vs podman), layer unpack (rootbox vs tar -x),
##        pull of a multi-layer image from a local registry (rootbox vs skopeo copy + umoci)
bench: build
	bench/runtime.sh
	bench/image.sh
	bench/unpack.sh
	bench/pull.sh

## bench-network: published-port throughput and connection latency: rootbox (pasta,
##                slirp4netns) vs podman rootless -p
bench-network: build
	bench/network.sh

clean:
	$(CARGO) clean
	rm -rf tests/.work bench/results
	@stage=$${ROOTBOX_STAGE:-/tmp/rootbox-stage}; \
	if [ -d "$$stage" ] && [ ! -L "$$stage" ] && [ -O "$$stage" ]; then rm -rf "$$stage"; fi
