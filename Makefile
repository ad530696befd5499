# kuma-rs developer commands. `make test` is what CI runs (.ci/run); `make demo` starts three
# control-plane peers with the seeds' example resources and shows a failover.

CARGO ?= cargo
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: setup setup-tests build test verify fmt-check clippy deps tests api-fuzz fix demo demo-single bench

setup:
	@.ci/setup

setup-tests:
	@.ci/setup --tests

build:
	$(CARGO) build --workspace --bins --locked

## test: install what is missing, then run the whole gate (what CI runs).
test: setup-tests verify

## verify: the read-only gate: formatting, lints, dependency direction, every test.
verify: fmt-check clippy deps tests api-fuzz

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

deps:
	@.ci/check-deps

# The binaries are built first: process tests run kuma-cp and kumactl from the target directory.
tests: build
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run --workspace --locked --no-fail-fast
else
	$(CARGO) test --workspace --locked --no-fail-fast
endif

# Every API operation fuzzed from /openapi.json: no 5xx, responses match the document.
api-fuzz: build
	@.ci/api-fuzz

## fix: the mutating twin of verify.
fix:
	$(CARGO) fmt --all
	$(CARGO) clippy --workspace --all-targets --fix --allow-dirty --allow-staged -- -D warnings

## demo: build, start three kuma-cp peers (Raft store), run the seeds' walkthrough with a kuma-dp
## (Envoy) beside each service, kill the leader, show traffic, the new leader, a write, the killed
## peer catching up; then keep running until Ctrl-C. demo-single: one kuma-cp, memory store.
demo: setup build
	@.ci/demo

demo-single: setup build
	@.ci/demo --single

## bench: release build, then in one run: xds-load across a 3-peer Raft cluster for N=1000, 5000
## and 10,000 dataplanes (p50/p99 convergence after a change written through any peer, KiB per
## connected dataplane per peer, CPU per change); the Raft store against three etcd 3.4 members
## started in the same run (raft-bench); a 3-peer cluster loaded with 10k, 30k and 100k resources
## (large-state: restart, snapshot build and install, memory per resource, list paging, and a
## table of how each grew). Every run is bounded by its own deadlines (--setup-timeout,
## --round-timeout); an xds-load run that misses one is reported and the others still run.
## See BENCHMARKS.md.
# The binaries are run from the target directory: `cargo run -p` would unify features for one
# package only and rebuild dependencies.
bench: BIN = $(shell $(CARGO) metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release
bench:
	@.ci/setup --bench
	$(CARGO) build --release --bins --locked
	-$(BIN)/xds-load --peers 3 --n 1000
	-$(BIN)/xds-load --peers 3 --n 5000 --setup-timeout 300 --round-timeout 60
	-$(BIN)/xds-load --peers 3 --n 10000 --setup-timeout 600 --round-timeout 120
	$(BIN)/raft-bench --kills 10
	$(BIN)/large-state --resources 10000,30000,100000

## chaos: release build, then the long chaos run of a 3-peer Raft cluster: 100 kill -9 of the
## leader plus pauses, partitions, restarts of every peer, full disks, slow fsyncs, wiped peers and
## leader transfers, under a recorded workload (as root: the disk faults mount a tmpfs and write
## cgroup limits); checks linearizability, lost writes, convergence, and prints the failover times
## (see BENCHMARKS.md). The bounded versions run with the tests: chaos-tests/tests/it/raft_chaos.rs
## and raft_chaos_faults.rs.
.PHONY: chaos
chaos: BIN = $(shell $(CARGO) metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release
chaos:
	$(CARGO) build --release --bins --locked
	$(BIN)/chaos --kills 100
