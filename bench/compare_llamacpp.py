"""lerpscope against llama.cpp on one quantized GGUF base and one LoRA adapter, in one
invocation, the two sides' runs alternating so both see the same machine.

lerpscope runs `--a base --b ADAPTER --base GGUF` (the base kept quantized, the adapter at α);
llama.cpp (llama-cpp-python, the same thread count, f16 key/value cache as it defaults to) runs
the same GGUF with the adapter converted by llama.cpp's convert_lora_to_gguf.py at
lora_scale = α. Both decode greedily from the prompt ids 1..=16, ignoring end-of-text.

Rows (medians over rounds):
  decode, one column         tokens/s after the first token, at α 0.3 and 0.7 alternately
  α change → first token     lerpscope: nothing merged, prefill + one token; llama.cpp: a new
                             lora_scale (llama_set_adapters_lora) and its prefill + one token
  K = 4 columns at 4 alphas  lerpscope: one batch (bench columns); llama.cpp: one run after
                             another (it cannot batch mixed LoRA scales)
  base alone                 llama.cpp without the adapter, for scale
  peak RSS                   of each side's process

Usage (from the repository root, after `cargo build --release`):
  python3 bench/compare_llamacpp.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf \
      --adapter assets/smollm2-sentiment/positive --llama-cpp PATH/vendor/llama.cpp
(--lora-gguf FILE skips the conversion; --llama-cpp is llama-cpp-python's source tree, for the
converter.) Needs: llama-cpp-python and gguf (bench/requirements.txt), transformers.
On a CPU with AMX, llama-cpp-python 0.3.36 built natively crashed at its first evaluation (in
its AMX path); build it with AMX off and the CPU's other instruction sets on, e.g.
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
  -DGGML_BMI2=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON
  -DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON" pip install llama-cpp-python==0.3.36
"""

import argparse
import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = list(range(1, 17))


def hf_config_dir(gguf_path, out):
    """A config.json for the converter, from the GGUF's own metadata (Llama family)."""
    import gguf
    from transformers import LlamaConfig
    r = gguf.GGUFReader(gguf_path)

    def get(key, default=None):
        f = r.fields.get(key)
        if f is None:
            return default
        v = f.parts[f.data[0]]
        return v.tolist()[0] if hasattr(v, "tolist") else v

    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
    assert arch == "llama", f"{gguf_path}: the converter config is written for llama, not {arch}"
    tokens = r.fields.get("tokenizer.ggml.tokens")
    vocab = len(tokens.data) if tokens is not None else get("llama.vocab_size")
    tied = not any(t.name == "output.weight" for t in r.tensors)
    heads = get("llama.attention.head_count")
    c = LlamaConfig(vocab_size=vocab, hidden_size=get("llama.embedding_length"),
                    intermediate_size=get("llama.feed_forward_length"),
                    num_hidden_layers=get("llama.block_count"), num_attention_heads=heads,
                    num_key_value_heads=get("llama.attention.head_count_kv", heads),
                    rms_norm_eps=get("llama.attention.layer_norm_rms_epsilon"),
                    rope_theta=get("llama.rope.freq_base", 10000.0),
                    max_position_embeddings=get("llama.context_length"), tie_word_embeddings=tied)
    c.architectures = ["LlamaForCausalLM"]
    c.save_pretrained(out)


def convert_lora(args, tmp):
    base = os.path.join(tmp, "base-config")
    hf_config_dir(args.gguf, base)
    out = os.path.join(tmp, "lora.gguf")
    env = dict(os.environ, PYTHONPATH=os.path.join(args.llama_cpp, "gguf-py"))
    subprocess.run([sys.executable, os.path.join(args.llama_cpp, "convert_lora_to_gguf.py"),
                    "--base", base, "--outtype", "f16", "--outfile", out, args.adapter],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return out


def llama_worker(args):
    """One llama.cpp round in this (child) process; prints JSON."""
    import llama_cpp
    from llama_cpp import Llama
    kw = dict(model_path=args.gguf, n_threads=args.threads, n_threads_batch=args.threads,
              n_ctx=256, verbose=False)
    out = {}
    if args.worker == "base":
        m = Llama(**kw)
        rates = [decode(m, args.tokens)[1] for _ in range(args.iters)]
        out["decode_tok_s"] = statistics.median(rates)
    else:
        m = Llama(lora_path=args.lora_gguf, lora_scale=0.3, **kw)

        def scale(s):
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(m._lora_adapter)
            scales = (ctypes.c_float * 1)(s)
            assert llama_cpp.llama_set_adapters_lora(m._ctx.ctx, adapters, 1, scales) == 0

        ttft, rates, one, four = [], [], [], []
        for i in range(args.iters):
            t = time.perf_counter()
            scale(0.3 if i % 2 == 0 else 0.7)
            first, rate = decode(m, args.tokens)
            ttft.append(time.perf_counter() - t - (args.tokens - 1) / rate)
            rates.append(rate)
            t = time.perf_counter()
            scale(0.0)
            decode(m, args.tokens)
            one.append(time.perf_counter() - t)
            t = time.perf_counter()
            for a in (0.0, 1 / 3, 2 / 3, 1.0):
                scale(a)
                decode(m, args.tokens)
            four.append(time.perf_counter() - t)
        out.update(ttft_ms=1e3 * statistics.median(ttft), decode_tok_s=statistics.median(rates),
                   one_column_ms=1e3 * statistics.median(one), four_columns_ms=1e3 * statistics.median(four))
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(out))


def decode(m, n):
    """Prefill the prompt, then n greedy tokens; (first-token seconds, decode tokens/s)."""
    import llama_cpp
    import numpy as np

    def last():
        # The context's own logits: llama-cpp-python leaves `scores` empty for a file
        # without a vocabulary (the random shapes' `no_vocab`).
        row = llama_cpp.llama_get_logits_ith(m._ctx.ctx, -1)
        return int(np.argmax(np.ctypeslib.as_array(row, shape=(m.n_vocab(),))))

    m.reset()
    t = time.perf_counter()
    m.eval(PROMPT)
    tok = last()
    first = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(n - 1):
        m.eval([tok])
        tok = last()
    return first, (n - 1) / (time.perf_counter() - t)


def run_json(cmd, env=None):
    p = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--adapter", required=True, help="a PEFT LoRA folder for the GGUF's model")
    ap.add_argument("--lora-gguf", help="the adapter already converted by convert_lora_to_gguf.py")
    ap.add_argument("--llama-cpp", help="llama.cpp's source tree, for convert_lora_to_gguf.py")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lerpscope", default=os.path.join(ROOT, "target", "release", "lerpscope"))
    ap.add_argument("--tokenizer", help="a tokenizer.json for lerpscope, for a GGUF without one "
                    "(the random files of `bench --shape S --quant Q` have one beside them)")
    ap.add_argument("--worker", choices=["base", "lora"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return llama_worker(args)
    with tempfile.TemporaryDirectory() as tmp:
        if not args.lora_gguf:
            if not args.llama_cpp:
                ap.error("--llama-cpp (to convert the adapter) or --lora-gguf")
            args.lora_gguf = convert_lora(args, tmp)
        env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
        ours = ["--a", "base", "--b", args.adapter, "--base", args.gguf, "--device", "cpu",
                "--temperature", "0", "--tokens", str(args.tokens), "--iters", str(args.iters), "--json"]
        if args.tokenizer:
            ours += ["--tokenizer", args.tokenizer]
        worker = [sys.executable, os.path.abspath(__file__), "--gguf", args.gguf, "--adapter", args.adapter,
                  "--lora-gguf", args.lora_gguf, "--tokens", str(args.tokens), "--iters", str(args.iters),
                  "--threads", str(args.threads), "--worker"]
        rows = {k: [] for k in ["ls_gen", "ls_cols", "lc_lora", "lc_base"]}
        for r in range(args.rounds):
            rows["ls_gen"].append(run_json([args.lerpscope, "bench", "generate", *ours], env))
            rows["lc_lora"].append(run_json(worker + ["lora"]))
            rows["ls_cols"].append(run_json([args.lerpscope, "bench", "columns", "--k", "4", *ours], env))
            rows["lc_base"].append(run_json(worker + ["base"]))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    def med(k, field):
        return statistics.median(x[field] for x in rows[k])

    ls_dec, lc_dec = med("ls_gen", "decode_tok_s"), med("lc_lora", "decode_tok_s")
    ls_ttft, lc_ttft = med("ls_gen", "ttft_ms"), med("lc_lora", "ttft_ms")
    ls_one, ls_four = med("ls_cols", "one_column_ms"), med("ls_cols", "batched_ms")
    lc_one, lc_four = med("lc_lora", "one_column_ms"), med("lc_lora", "four_columns_ms")
    info = rows["ls_gen"][0]
    print(f"{os.path.basename(args.gguf)} + LoRA {os.path.basename(args.adapter.rstrip('/'))}, "
          f"{args.threads} threads, {len(PROMPT)} prompt tokens, {args.tokens} new, medians of {args.rounds} rounds")
    print(f"  lerpscope: {info.get('description', '')}")
    print(f"| | lerpscope | llama.cpp | ratio |\n|---|---|---|---|")
    print(f"| decode, one column (tok/s) | {ls_dec:.1f} | {lc_dec:.1f} | {ls_dec / lc_dec:.2f}× |")
    print(f"| α change → first token (ms) | {ls_ttft:.1f} | {lc_ttft:.1f} | {lc_ttft / ls_ttft:.2f}× faster |")
    print(f"| K = 4 columns at 4 alphas (ms) | {ls_four:.0f} ({ls_four / ls_one:.2f}× one) | "
          f"{lc_four:.0f} ({lc_four / lc_one:.2f}× one) | {lc_four / ls_four:.2f}× faster |")
    print(f"| base alone, decode (tok/s) | – | {med('lc_base', 'decode_tok_s'):.1f} | |")
    print(f"| peak RSS (MB) | {med('ls_gen', 'peak_rss_bytes') / 1e6:.0f} | "
          f"{med('lc_lora', 'peak_rss_bytes') / 1e6:.0f} | |")


if __name__ == "__main__":
    sys.exit(main())
