#!/usr/bin/env bash
# The one command for all checks and tests (README "Test bed"; .ci/run calls it):
# formatting, clippy, the test bed (real etcd + kube-apiserver), all tests.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export CARGO_TERM_COLOR=never
start=$SECONDS

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "build the test bed (hack/build-testbed.sh)"
hack/build-testbed.sh

# One bed for every test binary, in its own state dir; always torn down.
export TESTBED_DIR="$repo/target/testbed/test"
trap 'rc=$?; hack/testbed.sh down || true; exit $rc' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
step "start the test bed in $TESTBED_DIR"
hack/testbed.sh down >/dev/null 2>&1 || true # a fresh bed, not one left by an interrupted run
hack/testbed.sh up
eval "$(hack/testbed.sh env)" # KUBECONFIG, ADS_TESTBED_DIR, PATH (kubectl, helm)

results="$repo/target/test-results.txt"
step "cargo test --doc"
cargo test --doc 2>&1 | tee "$results"

step "cargo test --all-targets --no-fail-fast"
cargo test --all-targets --no-fail-fast 2>&1 | tee -a "$results"

# One closing line over every test binary (cargo prints one result line per binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$results"

# Chart checks (helm lint --strict, helm template + server-side dry run, helm install)
# live in tests/chart.rs, and the CRD drift check (crds/ and the chart's crds/ against
# `ads-export-operator crd`) in tests/operator: both ran above against the bed.

step "all checks passed in $((SECONDS - start))s"
