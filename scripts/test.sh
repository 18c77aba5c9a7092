#!/usr/bin/env bash
# The test command: installs the third-party programs the interop tests use
# (into the git-ignored .test-deps/), then runs every test. Extra arguments go
# to `cargo test`, e.g. `scripts/test.sh --test failures`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-test-deps.sh
cargo test "$@"
