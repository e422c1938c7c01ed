#!/usr/bin/env bash
# Installs what ferry's tests, benchmarks and demo need on a fresh Debian/Ubuntu machine: the
# MariaDB server binaries, the Prometheus server (the metrics test scrapes a running copy with it)
# and Chromium (the status page test drives it headless), each only when missing, and the Go modules.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
updated=""
apt_install() {
  if [ -z "$updated" ]; then $SUDO apt-get update -qq; updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}
# A machine with MySQL's mysqld keeps it: the sandboxes initialise mysqld instead (package sandbox).
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ] &&
  ! command -v mysqld >/dev/null 2>&1 && [ ! -x /usr/sbin/mysqld ]; then
  echo "deps: neither mariadbd nor mysqld found; installing mariadb-server" >&2
  apt_install mariadb-server mariadb-client
  # The package starts a system server; ferry never uses it (sandboxes run their own), so stop it.
  $SUDO service mariadb stop >/dev/null 2>&1 || true
fi
if ! command -v prometheus >/dev/null 2>&1; then
  echo "deps: prometheus not found; installing it" >&2
  apt_install prometheus
  # The package starts a system server; the tests run their own on loopback ports.
  $SUDO service prometheus stop >/dev/null 2>&1 || true
fi
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  echo "deps: chromium not found; installing it" >&2
  apt_install chromium
fi
if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then export PATH=$PATH:/usr/local/go/bin; else
    echo "deps: Go is not installed; install Go 1.25 or newer" >&2; exit 1; fi
fi
go mod download
