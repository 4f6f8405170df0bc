#!/usr/bin/env bash
# Debian packages MuJoCo needs to render offscreen without a display: EGL and OSMesa from Mesa
# (software rasterisers). Idempotent: installs only what is missing.
set -euo pipefail
packages=(libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 libosmesa6)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
