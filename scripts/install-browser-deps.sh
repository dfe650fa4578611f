#!/usr/bin/env bash
# Install Debian's Chromium for the browser example's test, unless it is present.
#
# The test drives /usr/bin/chromium with playwright-core. Playwright's own browser
# download (`npx playwright install`) is not used, because it fetches a browser build
# from outside the package registries, which closed networks block.
#
# Needs root, or sudo without a password prompt. Set CHROMIUM to check another path.
set -euo pipefail

chromium="${CHROMIUM:-/usr/bin/chromium}"

if [ -x "$chromium" ]; then
	echo "install-browser-deps: $chromium is present: $("$chromium" --version 2>/dev/null || echo 'version unknown')"
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-browser-deps: $chromium not found and apt-get is missing; install Chromium with this system's package manager, or set CHROMIUM to its path" >&2
	exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
	as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	as_root=(sudo -n)
else
	echo "install-browser-deps: $chromium not found; run 'sudo apt-get install chromium' or run this script as root" >&2
	exit 1
fi

started=$(date +%s)
echo "install-browser-deps: installing Debian's chromium package with apt-get"
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
echo "install-browser-deps: installed $("$chromium" --version) in $(( $(date +%s) - started )) s"
