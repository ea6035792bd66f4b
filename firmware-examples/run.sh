#!/usr/bin/env bash
# Build the no_std firmware example (own _start, no libc, panic=abort) and run it on the host.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release
bin=target/x86_64-unknown-linux-gnu/release/tnet_firmware
if command -v nm >/dev/null; then
  # no Rust std and no libc symbols in the binary
  if nm "$bin" | grep -E ' (T|U) (_ZN3std|__libc_start_main|malloc)' ; then
    echo "std or libc symbols found in $bin" >&2
    exit 1
  fi
fi
"$bin"
