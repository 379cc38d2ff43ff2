# shellcheck shell=bash
# Shared set-up for bin/dev, bin/test and bin/smoke: idempotent, safe to run on every invocation.
# Installs system packages (when root), a Python >= 3.12 virtualenv with the pinned dependencies,
# and the web app's npm packages + build. Re-runs cheaply: each step is skipped when its inputs
# have not changed since the last successful run (stamps under .venv/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
APT_PACKAGES=(chromium espeak-ng coturn sox iproute2 iptables)

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }

find_python() {
  local candidate version
  for candidate in python3.13 python3.12 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then
      version=$("$candidate" -c 'import sys; print(int(sys.version_info >= (3, 12)))' 2>/dev/null || echo 0)
      # pyenv shims exist for versions that are not active: make sure it really runs
      if [ "$version" = "1" ]; then command -v "$candidate"; return 0; fi
    fi
  done
  local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
  if command -v pyenv >/dev/null 2>&1; then pyenv_root="$(pyenv root)"; fi
  for candidate in "$pyenv_root"/versions/3.1[2-9]*/bin/python3 /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9]; do
    if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}

ensure_system_packages() {
  local missing=() pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    say "missing system packages (${missing[*]}) and no apt-get: install them with your package manager"
    return 0
  fi
  local sudo=""
  if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      say "missing system packages (${missing[*]}); run as root: apt-get install ${missing[*]}"; return 0
    fi
  fi
  say "installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_venv() {
  local python
  if ! python=$(find_python); then
    say "Python >= 3.12 is required and none was found on PATH or among pyenv's versions."
    say "Install it (e.g. 'apt-get install python3.12 python3.12-venv' or 'pyenv install 3.12') and re-run."
    exit 1
  fi
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then
    say "creating virtualenv with $python"
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
  fi
  local stamp="$VENV/.deps-stamp" want
  want=$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing Python dependencies (pinned in pyproject.toml)"
    "$VENV/bin/python" -m pip install -q -e "$ROOT[platform,dev]"
    echo "$want" > "$stamp"
  fi
}

ensure_webapp() {
  [ -f "$ROOT/webapp/package.json" ] || return 0
  if ! command -v npm >/dev/null 2>&1; then
    say "npm (Node 20) is required to build the web app; install Node.js 20 and re-run"; exit 1
  fi
  local stamp="$ROOT/webapp/node_modules/.deps-stamp" want
  want=$(cat "$ROOT/webapp/package.json" "$ROOT/webapp/package-lock.json" 2>/dev/null | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing web app packages (npm ci)"
    (cd "$ROOT/webapp" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
  fi
  say "building the web app"
  (cd "$ROOT/webapp" && npm run --silent build)
}

# The official AppSync Events client (aws-amplify, pinned in its lockfile) that tests/events runs against
# the embedded gateway; a test folder of its own, so the web app's bundle does not carry it.
ensure_events_client() {
  local dir="$ROOT/tests/events/amplify"
  [ -f "$dir/package.json" ] || return 0
  command -v npm >/dev/null 2>&1 || return 0  # ensure_webapp already said npm is required
  local stamp="$dir/node_modules/.deps-stamp" want
  want=$(cat "$dir/package.json" "$dir/package-lock.json" 2>/dev/null | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing the AppSync Events test client (npm ci in tests/events/amplify)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
  fi
}

setup_all() {
  ensure_system_packages
  ensure_venv
  ensure_webapp
  ensure_events_client
}
