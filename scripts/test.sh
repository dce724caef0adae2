#!/usr/bin/env bash
# Build everything (installing what is missing), then run every test suite (npm test).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm test
