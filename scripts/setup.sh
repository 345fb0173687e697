#!/usr/bin/env bash
# Installs what transformer-sim needs on a Debian/Ubuntu machine: system packages (Tk, and for the
# tests a virtual screen) and a Python virtual environment in .venv. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=${1:-}

packages="python3-venv python3-tk fonts-noto-cjk"  # the CJK font: the window in Chinese (ui/fonts.py)
[ "$want_test" = "--test" ] && packages="$packages xvfb xauth xdotool imagemagick x11-utils fonts-dejavu-core"
if command -v apt-get >/dev/null 2>&1; then
  missing=$(for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "installing system packages: $missing"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
  fi
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
# install only when what decides the install changed (a second launch starts in a second or two, not six);
# pip's and setuptools' chatter goes to a log that is shown only when the install fails
stamp=".venv/.installed-$( (cat pyproject.toml setup.py; echo "$want_test") | sha256sum | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  log=.venv/install.log
  extra=""; [ "$want_test" = "--test" ] && extra="[test]"
  if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e ".$extra"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "error: installing the Python packages failed (the log above is also in $log)" >&2
    exit 2
  fi
  rm -f .venv/.installed-*
  touch "$stamp"
fi
