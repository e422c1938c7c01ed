#!/usr/bin/env bash
# Installs what `make bench` compares ferry with, beyond what scripts/deps.sh installs for the tests:
# mydumper/myloader (the snapshot section), zstd and percona-toolkit (pt-online-schema-change, the
# osc section's peer). Not needed by `make test`.
set -euo pipefail
missing=()
command -v mydumper >/dev/null 2>&1 || missing+=(mydumper)
command -v zstd >/dev/null 2>&1 || missing+=(zstd)
command -v pt-online-schema-change >/dev/null 2>&1 || missing+=(percona-toolkit)
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench-deps: installing ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
