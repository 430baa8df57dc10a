#!/usr/bin/env bash
# Installs the system packages the tests and interop checks need. Idempotent and quiet:
# packages already present are not fetched again.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PKGS=(
  openssl libssl-dev pkg-config xxd iproute2 python3
  tshark
  libsrtp2-dev
  libclang-dev
  ffmpeg
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0
  gstreamer1.0-nice gir1.2-gst-plugins-bad-1.0
  chromium
  rtpengine-daemon
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}"
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# GStreamer builds its plugin registry on first use (seconds on a fresh machine):
# build it here, not inside a test's time budget.
command -v gst-inspect-1.0 >/dev/null && gst-inspect-1.0 >/dev/null 2>&1 || true
