#!/usr/bin/env bash
# Check the import-linter contracts of pyproject.toml (the layers of ../shared/DESIGN.md).
# import-linter walks a package's folder, and Splice's namespace is assembled from several
# folders (pyproject's package-dir), so the check runs on a copy laid out as installed.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/splice"
cp -r src/splice/. "$tmp/splice/"
for part in resolver models lsp hooks; do
  cp -r "$part" "$tmp/splice/$part"
done
find "$tmp" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$tmp/splice/models/shipped"
cp pyproject.toml "$tmp/"
cd "$tmp" && PYTHONPATH="$tmp" lint-imports pyproject.toml
