# CloudBridge. The two commands a newcomer needs: `make demo` and `make test` (each installs what it needs).
SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: all deps build test demo docs check-docs bench clean clean-netns bench-auth bench-failover

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

# Every scenario, one after the other, then the scorecard (QUICK=1: short versions).
bench: build
	@QUICK=$(QUICK) node dist/bench/all.js

# Token verifications per second through the auth gate (RS256, ES256); QUICK=1 for a short run.
bench-auth: build
	@node dist/bench/auth.js

bench-failover: build
	@node dist/bench/failover.js

# WireGuard: registrations/s end to end, TCP through the agent-managed interface vs hand-configured wireguard-go (QUICK=1: short).
.PHONY: bench-wireguard
bench-wireguard: build
	@node dist/bench/wireguard.js

clean-netns:
	@node scripts/clean-netns.mjs

clean:
	rm -rf dist
