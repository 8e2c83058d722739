#!/usr/bin/env bash
# The one test command: installs what the tests need, runs every check and test, and
# stops whatever it started. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n==> %s\n' "$*"; }

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets -- -D warnings

step "build (the durability test runs the real runner binary)"
cargo build --workspace --bins

step "tests"
cargo test --workspace
