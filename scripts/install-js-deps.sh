#!/usr/bin/env bash
# Install what the Node.js and browser examples' tests need: their npm packages, and
# Debian's Chromium for the browser test.
#
# `npm ci` runs only in a folder whose node_modules is missing or older than its
# package-lock.json. Without npm, or when Chromium cannot be installed, this prints
# why and exits 0: the tests that need the missing tool are then skipped with the
# same reason.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v npm >/dev/null 2>&1; then
	echo "install-js-deps: npm not found; the Node.js and browser example tests will be skipped" >&2
	exit 0
fi

for folder in examples/node examples/browser; do
	installed="$folder/node_modules/.package-lock.json"
	if [ -f "$installed" ] && [ ! "$folder/package-lock.json" -nt "$installed" ]; then
		continue
	fi
	started=$(date +%s)
	(cd "$folder" && npm ci --no-audit --no-fund)
	echo "install-js-deps: npm ci in $folder took $(( $(date +%s) - started )) s"
done

scripts/install-browser-deps.sh ||
	echo "install-js-deps: Chromium is missing; the browser example test will be skipped" >&2
