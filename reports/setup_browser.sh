#!/usr/bin/env bash
# Install Debian's chromium for the report's headless-browser test
# (tests/reports/test_reports_browser.py).  Idempotent; prints the install time.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo '?')"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
start=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
end=$(date +%s)
echo "chromium installed in $((end - start)) s: $(/usr/bin/chromium --version 2>/dev/null || echo '?')"
