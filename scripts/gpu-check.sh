#!/usr/bin/env bash
# Every GPU check in one go, on a machine with an NVIDIA GPU and no Rust: run from the folder
# scripts/gpu-build.sh fills (lerpscope, gpu-tests, this script). Prints one summary table;
# with $OUT set, also writes it and the raw outputs there. Takes a few minutes at most (most
# of it writing and loading the random 1.7B-shape pair once).
set -uo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
# The fixtures the GPU tests read travel in the bundle; here no GPU test may skip.
export LERPSCOPE_FIXTURES="$PWD/fixtures" LERPSCOPE_REQUIRE_GPU=1

# The CUDA 13 runtime libraries: the system's, or those of PyTorch's pip wheels.
if ! ldd ./lerpscope | grep -q "not found"; then :; else
  L=$(python3 -c 'import nvidia,os;print(os.path.join(list(nvidia.__path__)[0],"cu13","lib"))' 2>/dev/null || true)
  [[ -n $L && -d $L ]] && export LD_LIBRARY_PATH=$L:${LD_LIBRARY_PATH:-}
fi
ldd ./lerpscope | grep "not found" && { echo "missing libraries (see above)"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

rows=()
row() { rows+=("$(printf '| %-46s | %-44s | %-24s | %-4s |' "$1" "$2" "$3" "$4")"); }
# j FILE EXPR: a Python expression over the JSON object `j` of FILE ("error" if it fails).
j() { python3 -c "import json,sys;j=json.load(open('$1'));print($2)" 2>/dev/null || echo error; }
# ok FILE CONDITION: pass or FAIL.
ok() { j "$1" "'pass' if ($2) else 'FAIL'" | sed 's/^error$/FAIL/'; }
bench() { local f=$1; shift; ./lerpscope bench "$@" --device cuda --json >"$OUT/$f.json" 2>"$OUT/$f.err"; }

# 1. The GPU tests (kernels vs CPU bit for bit in three dtypes, the fused pass vs candle's ops
#    and vs the CPU, no drift, memory). A run passes only when tests ran, none failed and none
#    skipped for want of a GPU.
./gpu-tests --test-threads 1 --nocapture >"$OUT/gpu-tests.txt" 2>&1
passed=$(grep -oE "[0-9]+ passed" "$OUT/gpu-tests.txt" | tail -1 | cut -d' ' -f1)
failed=$(grep -oE "[0-9]+ failed" "$OUT/gpu-tests.txt" | tail -1 | cut -d' ' -f1)
skipped=$(grep -c "no CUDA GPU" "$OUT/gpu-tests.txt")
row "GPU tests" "${passed:-?} passed, ${failed:-?} failed, $skipped skipped" \
  "all pass, none skipped" \
  "$([[ ${passed:-0} -gt 0 && ${failed:-x} == 0 && $skipped == 0 ]] && echo pass || echo FAIL)"

# 2. Blend of a 774M-parameter working set against a device-to-device copy, same run.
for dt in f32 f16 bf16; do
  bench blend-$dt blend --dtype $dt --params 774000000 --iters 20
  f="$OUT/blend-$dt.json"
  r=$(j "$f" "f\"{j['blend_ms']:.2f} ms, {j['blend_gb_s']:.0f} vs copy {j['copy_gb_s']:.0f} GB/s ({j['ratio']:.2f})\"")
  if [[ $dt == f32 ]]; then row "blend 774M $dt vs D2D copy" "$r" "≥ 0.90 of copy" "$(ok "$f" "j['ratio'] >= 0.9")"
  else row "blend 774M $dt vs D2D copy" "$r" "(reported)" info; fi
done

# The fused kernels (the forward pass of model/fused.rs, the adapter merge in one launch) are
# what these checks measure; LERPSCOPE_GPU_FUSED=0 gives the paths they replace, measured in
# the same run as the before.
export LERPSCOPE_GPU_FUSED=1

# 3. One column on the 135M Llama shape (random weights), both paths.
for dt in f32 bf16; do
  bench gen-$dt generate --shape smollm2-135m --dtype $dt --tokens 64 --iters 9
  LERPSCOPE_GPU_FUSED=0 bench gen-candle-$dt generate --shape smollm2-135m --dtype $dt --tokens 32 --iters 5
done
for dt in f32 bf16; do
  for p in candle fused; do
    [[ $p == fused ]] && f="$OUT/gen-$dt.json" || f="$OUT/gen-candle-$dt.json"
    r=$(j "$f" "f\"{j['decode_tok_s']:.0f} tok/s, first token {j['ttft_ms']:.2f} ms\"")
    if [[ $p == fused && $dt == bf16 ]]; then
      row "135M $dt, $p: decode; α change → 1st token" "$r" "≥ 400 tok/s; ≤ 8 ms" \
        "$(ok "$f" "j['decode_tok_s'] >= 400 and j['ttft_ms'] <= 8")"
    else
      row "135M $dt, $p: decode; α change → 1st token" "$r" "(reported)" info
    fi
  done
done

# 4. Where a decode step's time goes, both paths (enqueue, wait for the GPU, logits back,
#    sampling), one column and four. The fused path samples on the device ("copy" is then its
#    launch and the ids back); at T 0.8 a random model's nucleus spans the vocabulary, so its
#    rows are handed back to the host, and greedy (T 0) shows the device's pick alone.
for k in 1 4; do
  for t in 0.8 0; do
    f=step-k$k-t$t
    bench $f step --shape smollm2-135m --dtype bf16 --tokens 64 --iters 1 --k $k --temperature $t
    for i in 0 1; do
      r=$(j "$OUT/$f.json" "(lambda p: f\"{p['step_ms']:.3f} ms = {p['enqueue_ms']:.3f}+{p['wait_ms']:.3f}+{p['copy_ms']:.3f}+{p['sample_ms']:.3f}\")(j['paths'][$i])")
      name=$(j "$OUT/$f.json" "j['paths'][$i]['path']")
      row "135M bf16 step, $name, K = $k, T $t" "$r" "(enqueue+wait+copy+sample)" info
    done
  done
done

# 5. K = 4 columns as one batch against one column (fused pass).
bench columns-bf16 columns --shape smollm2-135m --dtype bf16 --k 4 --tokens 64 --iters 3
f="$OUT/columns-bf16.json"
row "135M bf16: K = 4 columns" "$(j "$f" "f\"re-blend {j['reblend_ratio']:.2f}×, batch {j['batched_ratio']:.2f}× one\"")" \
  "batch ≤ 1.3 × one" "$(ok "$f" "j['batched_ratio'] <= 1.3")"

# 6. Adapters (two random rank-8 LoRAs on every linear layer of the 135M shape): the merge in
#    one launch against a copy of the bytes it rewrites; factored decode against merged.
bench merge-bf16 blend --shape smollm2-135m --lora-rank 8 --dtype bf16 --iters 20
LERPSCOPE_GPU_FUSED=0 bench merge-per-tensor-bf16 blend --shape smollm2-135m --lora-rank 8 --dtype bf16 --iters 20
for m in per-tensor one-launch; do
  [[ $m == one-launch ]] && f="$OUT/merge-bf16.json" || f="$OUT/merge-per-tensor-bf16.json"
  r=$(j "$f" "f\"{j['merge_ms']:.3f} ms, {j['merge_gb_s']:.0f} vs copy {j['copy_gb_s']:.0f} GB/s ({j['ratio']:.2f})\"")
  if [[ $m == one-launch ]]; then row "135M + LoRA r8 bf16: merge, $m, vs copy" "$r" "≥ 0.80 of copy" "$(ok "$f" "j['ratio'] >= 0.8")"
  else row "135M + LoRA r8 bf16: merge, $m, vs copy" "$r" "(reported)" info; fi
done
bench lora-bf16 generate --shape smollm2-135m --lora-rank 8 --dtype bf16 --tokens 64 --iters 5
f="$OUT/lora-bf16.json"
row "135M + LoRA r8 bf16: factored vs merged" \
  "$(j "$f" "f\"{j['factored_decode_tok_s']:.0f} vs {j['decode_tok_s']:.0f} tok/s ({j['factored_decode_tok_s']/j['decode_tok_s']:.2f})\"")" \
  "factored ≥ 0.8 × merged" "$(ok "$f" "j['factored_decode_tok_s'] >= 0.8 * j['decode_tok_s']")"

# 7. The 1.7B shape in bf16: an α change against a device-to-device copy of the bytes it
#    moves (reads A and B, writes the working set), and decode against the copy bandwidth.
bench big-blend blend --shape smollm2-1.7b --dtype bf16 --iters 10
f="$OUT/big-blend.json"
row "1.7B bf16: α change vs copying its bytes" \
  "$(j "$f" "f\"{j['blend_ms']:.2f} ms = {1/j['ratio']:.2f} × a copy ({j['copy_gb_s']:.0f} GB/s)\"")" \
  "≤ 1.1 × copy" "$(ok "$f" "1/j['ratio'] <= 1.1")"
bench big-gen generate --shape smollm2-1.7b --dtype bf16 --tokens 64 --iters 3
g="$OUT/big-gen.json"
bw=$(j "$f" "j['copy_gb_s']")
row "1.7B bf16: decode vs copy bandwidth" \
  "$(j "$g" "f\"{j['decode_tok_s']:.0f} tok/s, {j['decode_gb_s']:.0f} GB/s ({j['decode_gb_s']/$bw:.2f}), 1st {j['ttft_ms']:.1f} ms\"")" \
  "≥ 0.5 × bandwidth/bytes" "$(ok "$g" "j['decode_gb_s'] >= 0.5 * $bw")"

{
  printf '| %-46s | %-44s | %-24s | %-4s |\n' check measured target ok
  printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..48})" "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..26})" "------"
  printf '%s\n' "${rows[@]}"
} | tee "$OUT/summary.md"
! grep -q "FAIL" "$OUT/summary.md"
