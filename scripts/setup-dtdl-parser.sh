#!/usr/bin/env bash
# Installs a real DTDL parser for the DTDL tests, idempotently, into a project-local directory
# (default .dtdl-parser/, $TWIN_DTDL_PARSER overrides it):
#   @digicatapult/dtdl-parser 1.1.83 — Microsoft's DTDLParser for .NET (DTDLParser 1.1.3,
#   DTDL v2 and v3) compiled to WebAssembly, with a small JS interop; runs on the machines'
#   Node 20 (its package says Node 24, which only matters for its own CLI).
# Prints the path of the parser's module, which scripts/dtdl-parse.mjs loads.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${TWIN_DTDL_PARSER:-$root/.dtdl-parser}"

DTDL_PARSER_VERSION="${DTDL_PARSER_VERSION:-1.1.83}"
module="$dir/node_modules/@digicatapult/dtdl-parser/build/interop/modelParser.js"

stamp="$dir/.twin-setup-$DTDL_PARSER_VERSION"
if [ ! -f "$stamp" ] || [ ! -f "$module" ]; then
  echo "setup-dtdl-parser: installing @digicatapult/dtdl-parser $DTDL_PARSER_VERSION into $dir" >&2
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || echo '{"name":"twin-dtdl-parser","private":true}' >"$dir/package.json"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error --save-exact \
    "@digicatapult/dtdl-parser@$DTDL_PARSER_VERSION" >&2
  [ -f "$module" ] || { echo "setup-dtdl-parser: $module is missing; the package layout changed" >&2; exit 1; }
  touch "$stamp"
fi
echo "$module"
