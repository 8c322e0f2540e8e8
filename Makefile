# CloudBridge. The two commands a newcomer needs: `make demo` and `make test` (each installs what it needs).
SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: bench-report all deps build test unit lint demo docs check-docs bench clean clean-netns xdp bench-xdp bench-auth bench-failover

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@$(MAKE) --no-print-directory xdp native
	@npm run --silent build

# The native I/O addon (batched UDP: recvmmsg/sendmmsg, GRO/GSO; TUN offloads with the vnet header:
# coalesced writes, split reads): gcc against the N-API headers that ship with Node
# (<node prefix>/include/node); nothing is downloaded.
NODE_INCLUDE := $(shell node -p "require('path').join(process.execPath, '..', '..', 'include', 'node')" 2>/dev/null)
NATIVE := dataplane/os/native/build/cbr_io.node
.PHONY: native
native: $(NATIVE)
$(NATIVE): dataplane/os/native/cbr_io.c dataplane/os/native/cbr_tun.c dataplane/os/native/cbr_io.h
	@mkdir -p $(dir $@)
	@test -f $(NODE_INCLUDE)/node_api.h || { echo "native: no N-API headers at $(NODE_INCLUDE)" >&2; exit 1; }
	gcc -O2 -Wall -Wextra -Werror -fPIC -shared -DNODE_GYP_MODULE_NAME=cbr_io -I$(NODE_INCLUDE) -o $@ $(filter %.c,$^)

# XDP programs (BPF objects the agent loads through libbpf).
XDP_SRC := $(wildcard xdp/src/*.bpf.c)
XDP_OBJ := $(patsubst xdp/src/%.bpf.c,xdp/build/%.bpf.o,$(XDP_SRC)) xdp/build/lb_bench.bpf.o
xdp: $(XDP_OBJ)
# bench build of the LB that undoes its encapsulation, so repeated BPF_PROG_TEST_RUN runs see one packet
xdp/build/lb_bench.bpf.o: xdp/src/lb.bpf.c $(wildcard xdp/src/*.h)
	@mkdir -p xdp/build
	clang -target bpf -O2 -g -Wall -Werror -DCBR_BENCH_RESTORE -I/usr/include/x86_64-linux-gnu -c $< -o $@
xdp/build/%.bpf.o: xdp/src/%.bpf.c $(wildcard xdp/src/*.h)
	@mkdir -p xdp/build
	clang -target bpf -O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -c $< -o $@

bench-xdp: build
	@node dist/bench/xdp.js

docs: build
	@node dist/agent/cli.js config docs > docs/config.md

# docs/config.md is generated from the schema; a stale copy fails the tests.
check-docs: build
	@node dist/agent/cli.js config docs | diff -u docs/config.md - >/dev/null || { echo "docs/config.md is stale: run 'make docs'" >&2; exit 1; }

# The pure tests (codecs, config, claims, Maglev, renderers): no root, no namespaces, seconds.
# A test belongs here when it needs nothing but loopback; everything else runs in `make test`.
UNIT_TESTS := agent/config/config auth/claims auth/decoders auth/ratelimit auth/verifier auth/introspect \
  bgp/render bgp/reply dataplane/errors dataplane/health dataplane/log dataplane/os/udp-batch dataplane/os/tun-offload $(basename $(wildcard tunnel/h3/*.test.ts)) \
  tunnel/masque/pure tunnel/masque/expiry-wheel tunnel/wireguard/keys tunnel/wireguard/config tunnel/wireguard/uapi \
  dataplane/net/ip dataplane/net/pool registry/change bgp/decide xdp/control-record agent/status-format \
  xdp/codecs xdp/config xdp/maglev bench/report
unit: native
	@test -d node_modules || npm ci
	@npm run --silent build
	@node --test $(patsubst %,dist/%.test.js,$(patsubst %.test,%,$(UNIT_TESTS)))

# Formatting and lint (biome), types (tsc), and the layering of imports (scripts/check-layers.mjs).
lint:
	@test -d node_modules || npm ci
	@npx tsc -p tsconfig.json --noEmit
	@npx biome check .
	@node scripts/check-layers.mjs

test: build check-docs
	@node scripts/clean-netns.mjs
	@npm test

# Two anycast PoPs, client and attacker in namespaces, narrated (ONCE=1: exit at the end, 0 if every step worked).
demo: build
	@ONCE=$(ONCE) node dist/bench/demo.js

# Every scenario, one after the other, then the scorecard (QUICK=1: short versions).
bench: build
	@QUICK=$(QUICK) node dist/bench/all.js

# The scorecard from the committed bench/results, without running anything.
bench-report: build
	@node dist/bench/all.js --report

# Token verifications per second through the auth gate (RS256, ES256); QUICK=1 for a short run.
bench-auth: build
	@node dist/bench/auth.js

# UDP packets/s on loopback: node:dgram against the native batched I/O addon, with and without GSO/GRO.
.PHONY: bench-udp-io
bench-udp-io: build
	@node dist/bench/udp-io.js

bench-failover: build
	@node dist/bench/failover.js

# The fleet on PostgreSQL: peer propagation, registrations/s vs SQLite, failover and restart gaps (QUICK=1: short).
.PHONY: bench-fleet
bench-fleet: build
	@QUICK=$(QUICK) node dist/bench/fleet.js

# WireGuard: registrations/s end to end, TCP through the agent-managed interface vs hand-configured wireguard-go (QUICK=1: short).
.PHONY: bench-wireguard
bench-wireguard: build
	@node dist/bench/wireguard.js

clean-netns:
	@node scripts/clean-netns.mjs

clean:
	rm -rf dist xdp/build dataplane/os/native/build

.PHONY: bench-masque
bench-masque: build
	node dist/bench/masque.js
