#!/usr/bin/env bash
# The project's test command: every unit, golden and end-to-end test of the workspace (the dev/test
# profile is optimised), then the no_std firmware example built with its own entry point and run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace 2>&1
echo "== firmware example (no_std, no_main, static arena)"
bash firmware-examples/run.sh
