#!/usr/bin/env bash
# Every GPU check in one go, on a machine with an NVIDIA GPU and no Rust: run from the folder
# scripts/gpu-build.sh fills (lerpscope, gpu-tests, this script). Prints one summary table;
# with $OUT set, also writes it and the raw outputs there. Takes a few minutes at most.
set -uo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
# The fixtures the GPU tests read travel in the bundle.
export LERPSCOPE_FIXTURES="$PWD/fixtures"

# The CUDA 13 runtime libraries: the system's, or those of PyTorch's pip wheels.
if ! ldd ./lerpscope | grep -q "not found"; then :; else
  L=$(python3 -c 'import nvidia,os;print(os.path.join(list(nvidia.__path__)[0],"cu13","lib"))' 2>/dev/null || true)
  [[ -n $L && -d $L ]] && export LD_LIBRARY_PATH=$L:${LD_LIBRARY_PATH:-}
fi
ldd ./lerpscope | grep "not found" && { echo "missing libraries (see above)"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

rows=()
row() { rows+=("$(printf '| %-44s | %-28s | %-22s | %-4s |' "$1" "$2" "$3" "$4")"); }
verdict() { python3 -c "import sys; print('pass' if $1 else 'FAIL')"; }

# 1. The GPU tests (kernel vs CPU bit for bit in three dtypes, logits vs CPU, no drift, memory).
#    A run passes only when tests ran, none failed and none skipped for want of a GPU.
./gpu-tests --test-threads 1 --nocapture >"$OUT/gpu-tests.txt" 2>&1
passed=$(grep -oE "[0-9]+ passed" "$OUT/gpu-tests.txt" | tail -1 | cut -d' ' -f1)
failed=$(grep -oE "[0-9]+ failed" "$OUT/gpu-tests.txt" | tail -1 | cut -d' ' -f1)
skipped=$(grep -c "skipped: no CUDA GPU" "$OUT/gpu-tests.txt")
row "GPU tests" "${passed:-?} passed, ${failed:-?} failed, $skipped skipped" \
  "all pass, none skipped" \
  "$([[ ${passed:-0} -gt 0 && ${failed:-x} == 0 && $skipped == 0 ]] && echo pass || echo FAIL)"

# 2. Blend of a 774M-parameter f32 working set against a device-to-device copy, same run.
./lerpscope bench blend --device cuda --dtype f32 --params 774000000 --iters 20 --json \
  >"$OUT/blend-f32.json" 2>&1
for dt in f16 bf16; do
  ./lerpscope bench blend --device cuda --dtype $dt --params 774000000 --iters 20 --json \
    >"$OUT/blend-$dt.json" 2>&1
done
for dt in f32 f16 bf16; do
  r=$(python3 -c "import json;j=json.load(open('$OUT/blend-$dt.json'));print(f\"{j['blend_ms']:.2f} ms, {j['blend_gb_s']:.0f} vs copy {j['copy_gb_s']:.0f} GB/s ({j['ratio']:.2f})\")" 2>/dev/null || echo error)
  ok=$(python3 -c "import json;print('pass' if json.load(open('$OUT/blend-$dt.json'))['ratio']>=0.9 else 'FAIL')" 2>/dev/null || echo FAIL)
  [[ $dt == f32 ]] && target="≥ 0.90 of copy" || target="(reported)"
  [[ $dt == f32 ]] || ok=info
  row "blend 774M $dt vs D2D copy" "$r" "$target" "$ok"
done

# 3. Slider move to the first new token, 135M Llama-architecture pair (random weights).
./lerpscope bench generate --shape smollm2-135m --device cuda --dtype f32 --tokens 8 --iters 9 \
  --json >"$OUT/generate-smollm2-f32.json" 2>&1
./lerpscope bench generate --shape smollm2-135m --device cuda --dtype bf16 --tokens 32 --iters 9 \
  --json >"$OUT/generate-smollm2-bf16.json" 2>&1
for dt in f32 bf16; do
  f="$OUT/generate-smollm2-$dt.json"
  r=$(python3 -c "import json;j=json.load(open('$f'));print(f\"{j['ttft_ms']:.1f} ms (blend {j['blend_ms']:.2f}), {j['decode_tok_s']:.0f} tok/s\")" 2>/dev/null || echo error)
  ok=$(python3 -c "import json;print('pass' if json.load(open('$f'))['ttft_ms']<30 else 'FAIL')" 2>/dev/null || echo FAIL)
  row "smollm2-135m $dt: α change → first token" "$r" "< 30 ms" "$ok"
done

# 4. K columns on the GPU: re-blend per column against one batch, each as a multiple of one
#    column's time. The batch must cost less than K single columns (else batching is pointless
#    there; which mode the UI picks is measured at run time either way).
./lerpscope bench columns --shape smollm2-135m --device cuda --dtype bf16 --k 4 --iters 3 --json \
  >"$OUT/columns-smollm2-bf16.json" 2>&1
f="$OUT/columns-smollm2-bf16.json"
r=$(python3 -c "import json;j=json.load(open('$f'));print(f\"re-blend {j['reblend_ratio']:.2f}×, batch {j['batched_ratio']:.2f}× one\")" 2>/dev/null || echo error)
ok=$(python3 -c "import json;j=json.load(open('$f'));print('pass' if j['batched_ratio']<j['k'] else 'FAIL')" 2>/dev/null || echo FAIL)
row "smollm2-135m bf16: K = 4 columns" "$r" "batch < K × one" "$ok"

{
  printf '| %-44s | %-28s | %-22s | %-4s |\n' check measured target ok
  printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..30})" "$(printf -- '-%.0s' {1..24})" "------"
  printf '%s\n' "${rows[@]}"
} | tee "$OUT/summary.md"
! grep -q "FAIL" "$OUT/summary.md"
