#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs the whole test suite.
# Golden parity tests read ../shared/golden (or $VARSHARP_SHARED/golden) and skip, saying so, where it is absent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
# The browser test uses Debian's Chromium; Playwright must never download one.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
log=$(mktemp)
set +e
dotnet test VarSharp.slnx -c Release --no-build --nologo 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One plain closing line, whatever the runner printed above.
summary=$(grep -E "(Passed|Failed)! +- Failed: +[0-9]+, Passed: +[0-9]+, Skipped: +[0-9]+" "$log" | tail -n 1 || true)
if [ -n "$summary" ]; then
  failed=$(sed -E 's/.*Failed: +([0-9]+).*/\1/' <<<"$summary")
  passed=$(sed -E 's/.*Passed: +([0-9]+).*/\1/' <<<"$summary")
  skipped=$(sed -E 's/.*Skipped: +([0-9]+).*/\1/' <<<"$summary")
  echo "$passed passed, $failed failed, $skipped skipped"
fi
rm -f "$log"
exit "$status"
