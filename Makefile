# rootbox: build, demo, test, bench.  See README.md.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

CARGO ?= cargo
RELEASE := target/release
DEMO_ROOTFS := target/demo/busybox-rootfs
DEMO_STORE := target/demo/store

PREFIX ?= /usr/local
DESTDIR ?=
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
SOMAJOR := $(firstword $(subst ., ,$(VERSION)))
# What a static link against libcontainer.a needs besides it (rustc --print native-static-libs).
STATIC_LIBS := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc

.PHONY: build demo test lint unit bench bench-network clean header install test-c

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

## header: regenerate include/rootbox.h from ffi/src with cbindgen (ffi/cbindgen.toml); a unit
##         test fails while the committed header is stale
header:
	ROOTBOX_BLESS=1 $(CARGO) test -p rootbox-ffi-header

## install: the C library (libcontainer.so.$(VERSION) + links, libcontainer.a), include/rootbox.h,
##          rootbox.pc and the container monitor (libexec/rootbox: rootbox-monitor and its
##          rootbox-monitor-supervise) under PREFIX (default /usr/local)
install: build
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/libexec/rootbox
	install -m 0755 $(RELEASE)/libcontainer.so $(DESTDIR)$(PREFIX)/lib/libcontainer.so.$(VERSION)
	ln -sfn libcontainer.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libcontainer.so.$(SOMAJOR)
	ln -sfn libcontainer.so.$(SOMAJOR) $(DESTDIR)$(PREFIX)/lib/libcontainer.so
	install -m 0644 $(RELEASE)/libcontainer.a $(DESTDIR)$(PREFIX)/lib/libcontainer.a
	install -m 0644 include/rootbox.h $(DESTDIR)$(PREFIX)/include/rootbox.h
	install -m 0755 $(RELEASE)/rootbox-monitor $(RELEASE)/rootbox-monitor-supervise \
	    $(DESTDIR)$(PREFIX)/libexec/rootbox/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@PRIVATE_LIBS@|$(STATIC_LIBS)|' \
	    ffi/rootbox.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/rootbox.pc
	@echo "installed libcontainer $(VERSION) under $(DESTDIR)$(PREFIX)"

## test-c: the C API tests (tests/c) against a library installed into tests/.work/c-prefix
test-c:
	$(MAKE) install PREFIX=$(CURDIR)/tests/.work/c-prefix
	@if [ ! -x tests/.work/busybox-rootfs/bin/busybox ]; then \
	    rm -rf tests/.work/busybox-rootfs; tests/lib/mk-busybox-rootfs.sh tests/.work/busybox-rootfs; \
	fi
	tests/c/run.sh tests/.work/c-prefix tests/.work/busybox-rootfs

## test: as root: set up the machine, lint, build, unit tests, integration tests as
##       the unprivileged user rbtest and as root; otherwise the same as yourself
test:
	tests/run.sh

## lint: rustfmt and clippy, warnings are errors
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## unit: Rust unit tests only (and the freshness check of include/rootbox.h)
unit:
	$(CARGO) test --release
	$(CARGO) test -p rootbox-ffi-header

## bench: rootbox side by side with its peers, ratios against targets in
##        bench/results/summary.md and summary.png (see docs/PERFORMANCE.md):
##        start-to-exit of `true` (rootbox-runtime vs crun, runc, bwrap, unshare),
##        `run --rm IMAGE true` (rootbox vs podman), exec (vs crun, podman), N concurrent
##        starts, monitor memory (vs conmon), layer unpack (vs tar -x, umoci), pull
##        from a local registry (vs skopeo copy + umoci), limits in the cgroup v2 VM
bench: build
	bench/all.sh

## bench-network: published-port throughput and connection latency: rootbox (pasta,
##                slirp4netns) vs podman rootless -p
bench-network: build
	bench/network.sh

clean:
	$(CARGO) clean
	rm -rf tests/.work bench/results
	@stage=$${ROOTBOX_STAGE:-/tmp/rootbox-stage}; \
	if [ -d "$$stage" ] && [ ! -L "$$stage" ] && [ -O "$$stage" ]; then rm -rf "$$stage"; fi
