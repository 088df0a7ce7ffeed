#!/usr/bin/env bash
# Regenerates the web app's screenshots in docs/screenshots/ (linked from the README and
# docs/WEB.md): runs the browser test (node/tests/e2e/web_ui.rs) against two real daemons, with
# headless Chromium (Debian's `chromium`), and keeps what it saw.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v chromium >/dev/null || { echo "needs chromium (apt-get install chromium)"; exit 1; }
HEARTH_SCREENSHOTS="$PWD/docs/screenshots" cargo test --locked -p hearth-node --test e2e web_ui:: -- --nocapture
ls -1 docs/screenshots
