#!/usr/bin/env bash
# Quick start: see the whole pipeline work on this Linux machine, no Windows needed.
# Installs what is needed (apt-get, pip), builds harness and a small Linux guest from Debian's
# packages, serves an efW-shaped build from a local GitHub API stand-in, and runs
# `harness run` against it: provision → artifacts → install → suites → results.
# Extra arguments go to harness instead of `run` (e.g. `up`, `run --keep`, `status`).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash .ci/install-deps
export PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
cargo build -q -p harness -p testsupport --bin harness --bin harness-demo
exec target/debug/harness-demo "$@"
