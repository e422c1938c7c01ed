#!/usr/bin/env bash
# Installs what ferry's tests, benchmarks and demo need on a fresh Debian/Ubuntu machine:
# the MariaDB server binaries (only when mariadbd is missing) and the Go modules.
set -euo pipefail
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  echo "deps: mariadbd not found; installing mariadb-server" >&2
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mariadb-server mariadb-client >/dev/null
  # The package starts a system server; ferry never uses it (sandboxes run their own), so stop it.
  $SUDO service mariadb stop >/dev/null 2>&1 || true
fi
if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then export PATH=$PATH:/usr/local/go/bin; else
    echo "deps: Go is not installed; install Go 1.25 or newer" >&2; exit 1; fi
fi
go mod download
