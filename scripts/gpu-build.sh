#!/usr/bin/env bash
# Build the CUDA binary and the GPU test executables on this (GPU-less) machine and gather
# them, with the check script, into gpu-bundle/ and gpu-bundle.tgz (both ignored): copy either
# to a machine with an NVIDIA GPU and run `bash gpu-bundle/gpu-check.sh` there (no Rust needed).
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
# Debug info is most of their size; the bundle travels.
strip --strip-debug gpu-bundle/lerpscope gpu-bundle/gpu-tests
# Compressed, it is about a quarter of the size (mostly candle's PTX): unpack with
# `tar xzf gpu-bundle.tgz` and run `bash gpu-bundle/gpu-check.sh`.
tar -czf gpu-bundle.tgz gpu-bundle
echo "gpu-bundle/: $(du -sh gpu-bundle | cut -f1); gpu-bundle.tgz: $(du -sh gpu-bundle.tgz | cut -f1)"
