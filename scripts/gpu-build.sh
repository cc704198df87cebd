#!/usr/bin/env bash
# Build the CUDA binary and the GPU test executables on this (GPU-less) machine and gather
# them, with the check script and the fixtures the tests read, into gpu-bundle/ and
# gpu-bundle.txz (both ignored): copy either to a machine with an NVIDIA GPU and run
# `bash gpu-bundle/gpu-check.sh` there (no Rust needed).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fetch --locked >/dev/null
eval "$(scripts/cuda-toolchain.sh)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lerpscope-cuda}
cargo build --locked --release --features cuda
tests=$(cargo test --locked --release --features cuda --test gpu --no-run --message-format=json 2>/dev/null |
  python3 -c 'import sys,json
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="gpu": print(m["executable"])')
rm -rf gpu-bundle && mkdir -p gpu-bundle
cp "$CARGO_TARGET_DIR/release/lerpscope" gpu-bundle/
cp "$tests" gpu-bundle/gpu-tests
cp scripts/gpu-check.sh gpu-bundle/
mkdir -p gpu-bundle/fixtures
cp -r tests/fixtures/adapters tests/fixtures/families gpu-bundle/fixtures/
# Symbols and debug info are most of their size; the bundle travels.
strip --strip-all gpu-bundle/lerpscope gpu-bundle/gpu-tests
# xz takes it to about an eighth (mostly candle's PTX text): unpack with
# `tar xJf gpu-bundle.txz` and run `bash gpu-bundle/gpu-check.sh`.
tar -cJf gpu-bundle.txz gpu-bundle
echo "gpu-bundle/: $(du -sh gpu-bundle | cut -f1); gpu-bundle.txz: $(du -sh gpu-bundle.txz | cut -f1)"
