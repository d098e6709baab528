#!/usr/bin/env bash
# pysync's one entry point. Every command first installs what it needs, idempotently:
#   ./run.sh demo    serve the demo app (DynamoDB Local + proxy + page) on http://127.0.0.1:8765
#   ./run.sh test    lint, type-check and run the whole test suite (CPython, Chromium, DynamoDB Local)
#   ./run.sh bench   run the benchmarks; results in bench/results/, summary in docs/benchmarks.md
#   ./run.sh soak    the randomized model, many seeds (scripts/soak.py --help; see docs/reliability.md)
#   ./run.sh setup   only install
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p .stamps

log() { printf '\033[1m[pysync] %s\033[0m\n' "$*" >&2; }

# Prints the checksum of the given files and succeeds when it differs from the
# one recorded in .stamps/<name> by the last successful install.
changed() {
  local name=$1; shift
  local sum; sum=$(cat "$@" | sha256sum | cut -d' ' -f1)
  echo "$sum"
  [ "$(cat ".stamps/$name" 2>/dev/null)" != "$sum" ]
}

apt_install() {
  [ $# -eq 0 ] && return 0
  log "installing Debian packages: $*"
  export DEBIAN_FRONTEND=noninteractive
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 \
    || { $sudo apt-get update >/dev/null && $sudo apt-get install -y --no-install-recommends "$@" >/dev/null; }
}

setup() {
  local browser=$1 pkgs=()
  # A JDK, not only a JRE: DynamoDB Local is bound to loopback by a launcher javac compiles.
  command -v javac >/dev/null || pkgs+=(default-jdk-headless)
  if [ "$browser" = yes ] && [ ! -x /usr/bin/chromium ]; then pkgs+=(chromium); fi
  apt_install "${pkgs[@]+"${pkgs[@]}"}"

  if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    python3 -m venv .venv
  fi
  local sum
  if sum=$(changed python requirements-dev.lock pyproject.toml); then
    log "installing Python packages (requirements-dev.lock)"
    .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.lock
    .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
    echo "$sum" > .stamps/python
  fi
  if sum=$(changed npm package-lock.json) || [ ! -d node_modules/pyodide ]; then
    log "installing npm packages (package-lock.json)"
    npm ci --no-audit --no-fund --loglevel=error
    echo "$sum" > .stamps/npm
  fi
  log "building the pysync wheel and the offline Pyodide dist"
  .venv/bin/python scripts/build_dist.py >/dev/null
  .venv/bin/python scripts/build_aws_sdk.py >/dev/null  # the AWS JS SDK bundle (docs/sdks.md)
}

case "${1:-}" in
  demo)
    setup no
    shift
    exec .venv/bin/pysync dev --port 8765 "$@"
    ;;
  test)
    setup yes
    shift
    log "ruff"
    .venv/bin/ruff check src tests bench scripts
    .venv/bin/ruff format --check src tests bench scripts
    log "mypy --strict src"
    .venv/bin/mypy
    log "pytest"
    exec .venv/bin/pytest -q --timeout 300 "$@"
    ;;
  bench)
    setup yes
    shift
    exec .venv/bin/python bench/run_all.py "$@"
    ;;
  soak)
    setup yes
    shift
    exec .venv/bin/python scripts/soak.py "$@"
    ;;
  setup)
    setup yes
    ;;
  *)
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
