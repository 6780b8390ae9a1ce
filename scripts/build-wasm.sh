#!/usr/bin/env bash
# Rebuild the WebAssembly canonical-form scanner from its C source and embed
# it: src/ledger/wasm/canonical-scan.c -> src/ledger/wasm/canonical-scan-module.ts
# (base64, with the SHA-256 of the source it was built from; a unit test
# checks that the embedded module belongs to the committed source).
# Needs clang and lld (Debian: apt-get install clang lld); pgwitness itself
# needs neither: the module ships inside the TypeScript.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
src=src/ledger/wasm/canonical-scan.c
out=src/ledger/wasm/canonical-scan-module.ts
wasm="$(mktemp --suffix=.wasm)"
trap 'rm -f "$wasm"' EXIT
clang --target=wasm32 -msimd128 -O2 -nostdlib -fno-builtin -Wall -Wextra -Werror \
  -Wl,--no-entry -Wl,--strip-all -Wl,-z,stack-size=262144 -o "$wasm" "$src"
{
  echo "// Made by scripts/build-wasm.sh from canonical-scan.c ($(clang --version | head -1)). Do not edit."
  echo "export const CANONICAL_SCAN_SOURCE_SHA256 = '$(sha256sum "$src" | cut -d' ' -f1)'"
  echo "export const CANONICAL_SCAN_WASM_BASE64 ="
  echo "  '$(base64 -w0 "$wasm")'"
} > "$out"
echo "wrote $out ($(stat -c %s "$wasm") bytes of WebAssembly)"
