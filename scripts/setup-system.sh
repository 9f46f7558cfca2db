#!/usr/bin/env bash
# System packages the test suite needs beyond Python: Debian's chromium renders the HTML report
# headless in tests/test_report.py. Installs only as root with apt-get, and only when missing.
set -uo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian package chromium (for the HTML report test) ..."
  (apt-get install -y -qq chromium >/dev/null 2>&1 ||
   { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }) ||
   echo "could not install chromium; tests/test_report.py will fail until it is installed"
else
  echo "chromium is missing: install it (Debian: apt-get install chromium) for tests/test_report.py"
fi
exit 0
