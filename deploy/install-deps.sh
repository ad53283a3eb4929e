#!/usr/bin/env bash
# Install the Debian (bookworm) packages invsync needs to build, test and
# demo. Idempotent: checks with dpkg-query first and installs only what is
# missing, printing what it installs. Runs apt-get as root, or through sudo.
set -euo pipefail

PACKAGES=(
  build-essential pkg-config
  librdkafka-dev            # Kafka client (and its mock cluster)
  protobuf-c-compiler libprotobuf-c-dev
  libmicrohttpd-dev         # HTTP servers
  libsqlite3-dev sqlite3    # outbox, consumer state, embedded ERP
  libcmocka-dev             # unit tests
  libcurl4-openssl-dev      # http-json ERP adapter, simulator
  libjansson-dev            # JSON
  libyaml-dev               # config and policy files
  libssl-dev                # SHA-256 (libcrypto, already pulled in by librdkafka)
  clang-format valgrind
  curl ca-certificates tzdata
  python3 python3-pytest    # integration test harness
  maven default-jre-headless  # real Apache Kafka for the reliability suite
  prometheus                # promtool: alert rules, their unit tests, /metrics lint
  docker-compose            # validates docker-compose.yml (no Docker engine needed)
  chromium nodejs           # status page browser test (playwright-core from npm)
)
# npm installs playwright-core for the browser test. NodeSource's nodejs
# ships its own npm (and conflicts with Debian's): take Debian's only when
# there is none.
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

missing=()
for p in "${PACKAGES[@]}"; do
  case "$p" in \#*) continue ;; esac
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@";
  else echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; fi
}

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The integration harness runs with the first python3 on PATH; make sure it
# can import pytest (a pyenv python does not see Debian's python3-pytest).
if ! python3 -c 'import pytest' 2>/dev/null; then
  echo "install-deps: installing pytest for $(command -v python3)"
  python3 -m pip install -q pytest || {
    echo "install-deps: cannot install pytest for $(command -v python3)" >&2; exit 1; }
fi
