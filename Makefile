# Tulip — the two commands a newcomer needs are `make run` and `make test`.
SWIFT        ?= swift
CONFIG       ?= config/tulipd.json
PYTHON       ?= python3
APT_PACKAGES := pkg-config libssl-dev libsystemd-dev socat systemd systemd-container binutils openssl \
                sslscan dpkg-dev lintian
TULIPD       := .build/debug/tulipd

.PHONY: run test build deps lint bench deb clean

## Install what is missing: Debian packages (as root) and the Python test peers.
deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing:$$missing"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "missing Debian packages; run:"; \
			echo "  sudo apt-get update && sudo apt-get install -y$$missing"; \
			exit 1; \
		fi; \
	fi
	@$(PYTHON) -c "import pytest" 2>/dev/null || $(PYTHON) -m pip install -q pytest

build: deps
	$(SWIFT) build

## Build and run tulipd on the default config (Ctrl-C stops it gracefully).
run: build
	@mkdir -p /tmp/tulipd
	exec $(TULIPD) run --config $(CONFIG)

## Every test: the Swift suites, then the black-box suite against the built binary.
test: deps
	@scripts/run-tests.sh

lint:
	$(SWIFT) format lint --strict --parallel --recursive Sources Tests Package.swift

## tulipd_<version>_<arch>.deb in .build-deb/ (release build, lintian-checked).
deb: deps
	packaging/build-deb.sh

## Allocation gate (mallocs per echoed message), then echo throughput and CPU per message:
## tulipd vs raw SwiftNIO, asyncio and uvloop; TLS handshakes and TLS echo vs asyncio/uvloop + ssl;
## one tulipd against two reuse_port instances.
bench:
	Benchmarks/scripts/check-allocations.sh
	Benchmarks/scripts/bench-echo.sh
	Benchmarks/scripts/bench-udp.sh && Benchmarks/scripts/bench-files.sh --skip-build
	Benchmarks/scripts/bench-tls.sh --skip-build
	Benchmarks/scripts/bench-scale.sh --skip-build

clean:
	rm -rf .build Benchmarks/.build .build-deb
