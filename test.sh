#!/usr/bin/env bash
# The one test command: installs what the tests need (a Python venv with moto, cfn-lint,
# SAM CLI, cargo-lambda and zig), starts a moto server, runs every check and test, builds
# the Lambda binaries with `sam build`, and stops what it started. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")"

# Each step prints how long the one before it took, and the total, so a slow stage shows.
step_name="" step_started=$SECONDS
step() {
  if [ -n "$step_name" ]; then
    printf '<== %s: %ds (total %dm%02ds)\n' "$step_name" $((SECONDS - step_started)) $((SECONDS / 60)) $((SECONDS % 60))
  fi
  step_name="$*" step_started=$SECONDS
  # Free disk beside each step: a full disk fails a build far from its cause.
  [ -z "$step_name" ] || printf '\n==> %s (%s free)\n' "$step_name" "$(df -h --output=avail . | tail -n 1 | tr -d ' ')"
}

VENV=.venv
step "python tools in $VENV"
if [ ! -f "$VENV/.installed" ] || [ tests/python/requirements.txt -nt "$VENV/.installed" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet -r tests/python/requirements.txt
  touch "$VENV/.installed"
fi
export PATH="$PWD/$VENV/bin:$PATH"
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1

# Debian packages, as root or through sudo (which would drop an exported DEBIAN_FRONTEND:
# passed by env); the package lists are refreshed only when an install fails.
apt_install() {
  local as_root="env DEBIAN_FRONTEND=noninteractive"
  [ "$(id -u)" = 0 ] || as_root="sudo $as_root"
  $as_root apt-get install -y -q --no-install-recommends "$@" > /dev/null \
    || { $as_root apt-get update -q > /dev/null \
         && $as_root apt-get install -y -q --no-install-recommends "$@" > /dev/null; }
}

step "chromium from Debian's packages (the console's browser tests)"
command -v chromium > /dev/null || apt_install chromium
chromium --version

step "node and npm (the Node example), from Debian's packages when missing"
{ command -v node && command -v npm; } > /dev/null || apt_install nodejs npm
node --version
# The example's locked dependencies; npm's cache stays inside the repo's ignored folders.
npm_cache="$PWD/.tools/npm-cache"
(cd examples/node-notify && npm ci --no-audit --no-fund --silent --cache "$npm_cache")

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets -- -D warnings

step "template: cfn-lint and sam validate --lint"
cfn-lint template.yaml
sam validate --lint --template template.yaml
# The same with the static egress option on: its resources exist only under that condition.
mkdir -p target
sed '/^  StaticEgressIps:/,/^  [A-Za-z]/ s/Default: "false"/Default: "true"/' template.yaml \
  > target/template-static-egress.yaml
grep -q 'Default: "true"' target/template-static-egress.yaml
cfn-lint target/template-static-egress.yaml
sam validate --lint --template target/template-static-egress.yaml

step "moto server"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
moto_server -H 127.0.0.1 -p "$port" > "$VENV/moto.log" 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true' EXIT
export WEBHOOKS_TEST_MOTO_ENDPOINT="http://127.0.0.1:$port"
python3 - "$WEBHOOKS_TEST_MOTO_ENDPOINT" <<'PY' || { cat "$VENV/moto.log"; exit 1; }
import sys, time, urllib.request
for _ in range(150):
    try:
        urllib.request.urlopen(sys.argv[1] + "/moto-api/", timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.2)
sys.exit("moto did not start")
PY
echo "moto on $WEBHOOKS_TEST_MOTO_ENDPOINT"

step "build (tests run the real runner and function binaries)"
# With the tests, so binaries and tests share one build of the dependencies (features unify
# over what is built together; built apart, every dependency was compiled and stored twice).
cargo build --workspace --bins --tests

step "tests"
cargo test --workspace

step "benchmark smoke: every scenario, tiny (numbers come from a release run by hand)"
# The binary the build step made: `cargo run -p bench` would build the dependencies again
# with the bench's own feature set.
./target/debug/bench all --quick > /dev/null

step "OpenAPI: validate the document and fuzz the running API (schemathesis)"
api_dir=$(mktemp -d)
api_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
api_key="whp_schemathesis_$(date +%s)"
# Deliveries may reach only loopback, whatever URLs the fuzzer invents.
./target/debug/webhooks --data-dir "$api_dir" --addr "127.0.0.1:$api_port" --platform-key "$api_key" \
  --allow-http --allow-cidr 127.0.0.0/8 --only-allowed-cidrs > "$api_dir/runner.log" 2>&1 &
runner_pid=$!
trap 'kill "$moto_pid" "$runner_pid" 2>/dev/null || true' EXIT
python3 - "http://127.0.0.1:$api_port" "$api_dir/openapi.json" <<'PY' || { cat "$api_dir/runner.log"; exit 1; }
import sys, time, urllib.request
for _ in range(150):
    try:
        body = urllib.request.urlopen(sys.argv[1] + "/openapi.json", timeout=1).read()
        open(sys.argv[2], "wb").write(body)
        sys.exit(0)
    except Exception:
        time.sleep(0.2)
sys.exit("the runner did not start")
PY
openapi-spec-validator "$api_dir/openapi.json"
schemathesis run "http://127.0.0.1:$api_port/openapi.json" \
  -H "Authorization: Bearer $api_key" --checks not_a_server_error \
  --max-examples 25 --request-timeout 15 --seed 1
kill "$runner_pid"

step "browser: the console's journey in Chromium (Playwright), with screenshots"
python3 tests/browser/console_journey.py --runner ./target/debug/webhooks \
  --screenshots target/console-screenshots

step "examples: the Python, Node and Rust receivers end to end against the runner"
python3 tests/examples/run_examples.py --runner ./target/debug/webhooks \
  --rust-receiver ./target/debug/example-axum-receiver

step "fuzz: a short bounded run of each target (tests/fuzz)"
if [ ! -x .tools/bin/cargo-fuzz ]; then
  cargo install --quiet --root .tools cargo-fuzz --locked
fi
# cargo fuzz passes unstable compiler flags; RUSTC_BOOTSTRAP lets the stable toolchain
# accept them, since no nightly toolchain can be installed here.
# The targets link only the domain crate, so this build stays small.
for target in event_ingest event_structured subscription_body signature_header; do
  log=".tools/fuzz-$target.log"
  if ! RUSTC_BOOTSTRAP=1 .tools/bin/cargo-fuzz fuzz run --fuzz-dir tests/fuzz --sanitizer none \
    "$target" -- -max_total_time=15 -print_final_stats=1 > "$log" 2>&1; then
    cat "$log"
    exit 1
  fi
  tail -n 4 "$log"
done

step "sam build: the four Lambda bootstrap binaries"
if rustup target add aarch64-unknown-linux-gnu; then
  # In source: the functions' Makefiles build from the workspace (see functions/lambda.mk).
  sam build --build-in-source --template template.yaml
  for f in IngestFunction ApiFunction FanoutFunction DeliverFunction; do
    printf '%-16s %s bytes (arm64)\n' "$f" "$(stat -c %s ".aws-sam/build/$f/bootstrap")"
  done
else
  echo "This machine cannot install the aarch64-unknown-linux-gnu Rust target, so sam build"
  echo "cannot make arm64 binaries here. Building the four functions for x86_64 instead."
  cargo lambda build --release --x86-64 -p ingest -p api -p fanout -p deliver
  for f in ingest api fanout deliver; do
    printf '%-8s %s bytes (x86_64)\n' "$f" "$(stat -c %s "target/lambda/$f/bootstrap")"
  done
fi

step ""
echo "test command: every step passed in $((SECONDS / 60))m$((SECONDS % 60))s"
