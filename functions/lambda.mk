# What `sam build` runs for each function (`BuildMethod: makefile`, built in source).
#
# The first function's target builds all four in one cargo invocation: their dependencies
# compile once, with one set of features, and the other three find their binaries made.
# (SAM's rust-cargolambda method builds each with `--bin` alone, so each resolved its own
# features and compiled much of the tree again: four times the work on a cold build.)
# Each binary still links only what its own crate uses.

WORKSPACE := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)

lambdas:
	cd "$(WORKSPACE)" && cargo lambda build --release --arm64 -p ingest -p api -p fanout -p deliver

.PHONY: lambdas
