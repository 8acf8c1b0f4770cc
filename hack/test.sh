#!/usr/bin/env bash
# The one command for all checks and tests (README "Test bed"; .ci/run calls it):
# formatting, clippy, the test bed (real etcd + kube-apiserver), all tests; then the
# cluster tests (tests/cluster) on a real cluster (hack/cluster.sh) as their own step.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export CARGO_TERM_COLOR=never
start=$SECONDS

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets --all-features -- -D warnings"
cargo clippy --all-targets --all-features -- -D warnings

step "build the test bed (hack/build-testbed.sh)"
hack/build-testbed.sh

# One bed for every test binary, in its own state dir; always torn down.
export TESTBED_DIR="$repo/target/testbed/test"
export CLUSTER_DIR="$repo/target/testbed/cluster-test"
trap 'rc=$?; hack/testbed.sh down || true; hack/cluster.sh down || true; exit $rc' EXIT
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

# The cluster tests: the operator image and chart built and pushed to the cluster's
# registry, installed with helm, running as pods. Built outside the cluster's
# namespaces (they have no network), run inside them.
step "stop the test bed; build the release binaries and the cluster tests"
hack/testbed.sh down
cargo build --release --locked --bin ads-export-operator --bin ads-emulator
cargo test --locked --features cluster-tests --test cluster --no-run
step "start the cluster in $CLUSTER_DIR"
hack/cluster.sh down >/dev/null 2>&1 || true
hack/cluster.sh up
step "cargo test --features cluster-tests --test cluster (inside the cluster's namespaces)"
hack/cluster.sh exec cargo test --offline --locked --features cluster-tests --test cluster -- --test-threads 1 --nocapture \
  2>&1 | tee -a "$results"

# One closing line over every test binary (cargo prints one result line per binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$results"

# Chart checks (helm lint --strict, helm template + server-side dry run, helm install)
# live in tests/chart.rs, and the CRD drift check (crds/ and the chart's crds/ against
# `ads-export-operator crd`) in tests/operator: both ran above against the bed.

step "all checks passed in $((SECONDS - start))s"
