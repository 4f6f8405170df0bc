#!/usr/bin/env bash
# Creates .bench-venvs/robodesk with the original robodesk and the versions it runs on, for
# `make bench`. Idempotent: does nothing when robodesk already imports there.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.bench-venvs/robodesk"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import robodesk" 2>/dev/null; then
  exit 0
fi
python3.11 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q robodesk==1.0.0 dm_control==1.0.50 mujoco==3.17.0 'pillow<10'
