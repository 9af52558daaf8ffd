#!/usr/bin/env bash
# Install the player page's one third-party script, hls.js, from the npm registry into
# vendor/ beside this file (git-ignored), where the app serves it as /static/vendor/hls.min.js.
# The page then needs no CDN. HLS_JS_VERSION overrides the pinned version.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="${HLS_JS_VERSION:-1.6.19}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
npm install --silent --no-audit --no-fund --no-save --prefix "$work" "hls.js@${version}"
mkdir -p "$here/vendor"
cp "$work/node_modules/hls.js/dist/hls.min.js" "$here/vendor/hls.min.js"
cp "$work/node_modules/hls.js/LICENSE" "$here/vendor/hls.js.LICENSE"
echo "hls.js $(node -p "require('$work/node_modules/hls.js/package.json').version") -> $here/vendor/hls.min.js"
