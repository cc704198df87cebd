#!/usr/bin/env bash
# Installs a CUDA 13.0 build toolchain from PyPI wheels on a machine with no GPU and no CUDA toolkit,
# so that crates using candle's `cuda` feature can be compiled and linked here and the binary run on
# a machine that has an NVIDIA driver (580 or newer) and the CUDA 13 runtime libraries.
#
# Usage:  eval "$(scripts/cuda-toolchain.sh)"      # installs once, then prints exports
#         CUDA_PREFIX=/some/dir scripts/cuda-toolchain.sh
#
# Why 13.0.x exactly: newer nvcc writes PTX that a 580 driver refuses to load.
# Why a stub libcuda: no wheel ships the driver library; the linker only needs its symbols (with
# SONAME libcuda.so.1); at run time the real driver's libcuda.so.1 is used.
# A cold build of candle's own kernels then takes ~18 minutes on 2 cores: keep a persistent
# CARGO_TARGET_DIR for CUDA builds outside the clone, and build them in release only.
set -euo pipefail
P=${CUDA_PREFIX:-/opt/cu13pip}
C="$P/nvidia/cu13"
if [[ ! -x $C/bin/nvcc || ! -f $C/lib/stubs/libcuda.so || ! -e $C/lib/libcublasLt.so ]]; then
  python3 -m pip install -q --no-deps --target "$P" \
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 nvidia-curand==10.4.0.35 nvidia-cublas==13.1.0.3 >&2
  cd "$C/lib"
  # the linker wants unversioned names; the wheels ship only the SONAME files
  for l in cudart.so.13 nvrtc.so.13 curand.so.10 cublas.so.13 cublasLt.so.13; do ln -sf "lib$l" "lib${l%.*}"; done
  mkdir -p stubs
  # every cu* entry point that cudarc declares, each returning an error: enough to link, never run
  sys=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs 2>/dev/null | tail -n 1)
  if [[ -z $sys ]]; then
    echo "cuda-toolchain: run 'cargo fetch' in a project that depends on candle-core with the cuda feature first" >&2
    exit 1
  fi
  stub=$(mktemp --suffix=.c)
  grep -ohE "pub unsafe fn cu[A-Za-z0-9_]+" "$sys" | awk '{print $4}' | sort -u |
    awk '{print "int " $1 "(void){return 999;}"}' >"$stub"
  gcc -shared -fPIC -o stubs/libcuda.so -Wl,-soname,libcuda.so.1 "$stub"
  rm -f "$stub"
fi
echo "export PATH=$C/bin:\$PATH CUDA_ROOT=$C CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}"
