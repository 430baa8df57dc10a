#!/usr/bin/env bash
# The project's test command (the README's second command).
# Runs every crate's unit, property, integration and interop tests. Interop tests
# need the system packages that .ci/install.sh installs (tshark, libsrtp2-dev,
# GStreamer, ffmpeg); run `sudo bash .ci/install.sh` once first.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets "$@"
# Doc tests are not covered by --all-targets.
cargo test --workspace --doc --quiet
