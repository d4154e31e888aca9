#!/usr/bin/env bash
# The test entry point (README, .ci/run): provisions the machine, then runs `cargo test` with
# any arguments given. As root every test runs; as another user the lab tests (they build
# network namespaces) are skipped, which this says once, and the rest run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
if [ "$(id -u)" = 0 ]; then
    "$here/setup.sh"
    unset MH_SKIP_ROOT_TESTS
else
    "$here/setup.sh" --rust-only
    echo "mhrouter tests: not root, so the lab tests (network namespaces) are skipped; run as root for all"
    export MH_SKIP_ROOT_TESTS=1
fi
exec cargo test "$@"
