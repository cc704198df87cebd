#!/usr/bin/env bash
# Build the CUDA binary and the GPU test executables on this (GPU-less) machine and gather
# them, with the check script, into gpu-bundle/ (ignored): copy that folder to a machine with
# an NVIDIA GPU and run `bash gpu-bundle/gpu-check.sh` there (no Rust needed).
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
echo "gpu-bundle/: $(du -sh gpu-bundle | cut -f1)"
