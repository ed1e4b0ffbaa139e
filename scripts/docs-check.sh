#!/usr/bin/env bash
# Builds docs/ with MkDocs strictly (mkdocs.yml): a link to a missing page or heading fails.
# MkDocs lives in a venv of its own under BUNDLE_CACHE, keyed by requirements/docs.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/paths.sh

key=$(sha256sum requirements/docs.txt | cut -c1-16)
venv=$BUNDLE_CACHE/docs-venv-$key
if [ ! -e "$venv/.complete" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements/docs.txt \
    || { rm -rf "$venv"; echo "docs-check: installing requirements/docs.txt failed (see pip's lines above)" >&2; exit 1; }
  touch "$venv/.complete"
  for old in "$BUNDLE_CACHE"/docs-venv-*; do
    [ "$old" = "$venv" ] || rm -rf "$old"
  done
fi
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
NO_MKDOCS_2_WARNING=1 "$venv/bin/mkdocs" build --strict --site-dir "$site"
echo "docs: $(find docs -name '*.md' | wc -l) pages built, no broken link"
