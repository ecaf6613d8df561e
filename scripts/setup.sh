#!/usr/bin/env bash
# One-shot, idempotent set-up of a fresh Debian/Ubuntu machine for edge-dac development:
# system packages, a virtualenv in .venv, the CPU build of torch, and edge-dac itself.
# GPU and Jetson machines: see README "Installation" (install their torch first, then `pip install -e .`).
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: PortAudio (sounddevice), libsndfile (soundfile), dpkg/apt tools (corpus fetch),
# PulseAudio (virtual microphone for tests), Java (METEOR), systemd (unit verification), Node.js (contract test),
# wavpack (wvunpack: GrandOrgue samples in the soundscape catalog are WavPack, which libsndfile cannot read).
APT_PACKAGES=(
  libportaudio2 libsndfile1 pulseaudio pulseaudio-utils libasound2-plugins alsa-utils systemd wavpack
)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# Java and Node.js may come from elsewhere (a vendor JDK, NodeSource's nodejs, which conflicts with
# Debian's npm): only install Debian's when the command is missing.
command -v java >/dev/null || missing+=(default-jre-headless)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# The CPU wheel first: a bare `torch` requirement would pull a multi-GB CUDA build.
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install -q "torch==${TORCH_VERSION:-2.13.0}"
.venv/bin/pip install -q -e ".[dev]"

# Node.js example subscriber (examples/subscriber.js) used by the daemon's contract test.
if command -v npm >/dev/null && [ ! -d examples/node_modules/zeromq ]; then
  (cd examples && npm ci --no-audit --no-fund --silent)
fi
