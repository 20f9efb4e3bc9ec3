#!/usr/bin/env bash
# Builds skiff and starts a local cluster with `skiff up` (used by `make up`).
# Arguments are passed on to `skiff up`.
set -euo pipefail
cd "$(dirname "$0")/.."

make --no-print-directory build # bin/skiff, with the version stamped as make build does
exec bin/skiff up "$@"
