# CloudBridge. The two commands a newcomer needs: `make demo` and `make test` (each installs what it needs).
SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: all deps build test demo docs check-docs bench clean clean-netns

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@npm run --silent build

docs: build
	@node dist/dataplane/cli.js config docs > docs/config.md

# docs/config.md is generated from the schema; a stale copy fails the tests.
check-docs: build
	@node dist/dataplane/cli.js config docs | diff -u docs/config.md - >/dev/null || { echo "docs/config.md is stale: run 'make docs'" >&2; exit 1; }

test: build check-docs
	@node scripts/clean-netns.mjs
	@npm test

demo: build
	@node dist/bench/demo.js

bench: build
	@echo "bench scenarios land with their subsystems (bench/<scenario>); nothing to run yet" >&2

# WireGuard: registrations/s end to end, TCP through the agent-managed interface vs hand-configured wireguard-go (QUICK=1: short).
.PHONY: bench-wireguard
bench-wireguard: build
	@node dist/bench/wireguard.js

clean-netns:
	@node scripts/clean-netns.mjs

clean:
	rm -rf dist
