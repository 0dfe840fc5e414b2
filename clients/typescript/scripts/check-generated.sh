#!/usr/bin/env bash
# Checks that src/gen/ is exactly what `buf generate` (buf.gen.yaml at the repository root)
# produces from proto/ now: regenerates into a temporary directory and diffs.
# Fix a failure with:  clients/typescript/node_modules/.bin/buf generate   (at the repository root)
set -euo pipefail
pkg="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="$(cd "$pkg/../.." && pwd)"
buf="$pkg/node_modules/.bin/buf"
[[ -x "$buf" ]] || { echo "check-generated: $buf missing: run 'npm ci' in $pkg" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$root"
"$buf" generate --output "$tmp"
if diff -r "$tmp/clients/typescript/src/gen" "$pkg/src/gen" > "$tmp/diff.txt"; then
  echo "check-generated: clients/typescript/src/gen is current"
else
  head -n 60 "$tmp/diff.txt" >&2
  echo "check-generated: clients/typescript/src/gen is STALE; regenerate at the repository root with:" >&2
  echo "  clients/typescript/node_modules/.bin/buf generate" >&2
  exit 1
fi
