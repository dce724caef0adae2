#!/usr/bin/env bash
# Build everything (installing what is missing), check the code (npm run lint: the TypeScript
# compiler and Biome's formatter and linter), then run every test suite (npm test).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run lint
npm test
