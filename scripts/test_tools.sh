#!/usr/bin/env bash
# The two programs some tests drive: Neovim (tests/test_lsp_nvim.py drives the language server
# from a real editor) and headless Chromium (tests/test_ci_html.py renders splice ci's HTML
# report). Installed from Debian's packages where this user may (root with apt-get); otherwise
# those tests skip, and this says so.
set -uo pipefail
need=()
command -v nvim >/dev/null || need+=(neovim)
command -v chromium >/dev/null || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v nvim >/dev/null || echo "note: no nvim: tests/test_lsp_nvim.py will skip (apt-get install neovim)"
command -v chromium >/dev/null || echo "note: no chromium: tests/test_ci_html.py will skip (apt-get install chromium)"
exit 0
