#!/usr/bin/env bash
# Builds skiff and starts a local cluster with `skiff up` (used by `make up`).
# Arguments are passed on to `skiff up`.
set -euo pipefail
cd "$(dirname "$0")/.."

go build -o bin/skiff ./cmd/skiff
exec bin/skiff up "$@"
