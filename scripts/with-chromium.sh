#!/usr/bin/env bash
# Run a command with Debian's Chromium and its WebDriver at hand (the console's browser
# test). Installs Debian's chromium and chromium-driver with apt-get when missing (never a
# browser download). Exports CHROMIUM and CHROMEDRIVER.
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    echo "with-chromium: chromium or chromedriver not found, installing Debian's packages" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
CHROMIUM=$(command -v chromium)
CHROMEDRIVER=$(command -v chromedriver)
export CHROMIUM CHROMEDRIVER
echo "with-chromium: $("$CHROMIUM" --version 2>/dev/null | head -1)" >&2
"$@"
