#!/usr/bin/env bash
# The project's test command: every unit and end-to-end test (optimised build), then the
# no_std firmware example built and run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace 2>&1
