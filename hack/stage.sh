#!/usr/bin/env bash
# Usage: hack/stage.sh NAME COMMAND [ARG...]
# Runs COMMAND and prints how long the stage took, e.g. "==> test-unit took 42.3s".
# The exit status is COMMAND's.
set -uo pipefail

if [[ $# -lt 2 ]]; then
	echo "usage: $0 NAME COMMAND [ARG...]" >&2
	exit 2
fi
name=$1
shift

echo "==> $name"
start=$EPOCHREALTIME
"$@"
rc=$?
took=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
if [[ $rc -eq 0 ]]; then
	echo "==> $name took ${took}s"
else
	echo "==> $name FAILED (exit $rc) after ${took}s"
fi
exit "$rc"
