#!/usr/bin/env python3
"""lerpscope against the transformers/PyTorch reference, side by side.

For each shape, runs `lerpscope bench {blend,generate,columns}` and bench/reference.py on the
same random pair (written by lerpscope under the temporary directory), alternating the two
sides for several rounds, and prints one Markdown table of medians and speed-ups.

    python bench/compare.py --rounds 3 --shapes demo smollm2-135m gpt2-124m --dtypes f32 bf16

Each decode figure also states the bytes one token streams (every weight once) and the GB/s
that rate implies, next to the copy bandwidth `bench blend` measured in the same round.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_json(cmd, threads):
    """Run one side with `threads` threads: lerpscope (candle and rayon) reads
    RAYON_NUM_THREADS, the reference takes --threads (torch.set_num_threads)."""
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lerpscope", default=os.path.join(ROOT, "target/release/lerpscope"))
    ap.add_argument("--python", default=sys.executable, help="interpreter with bench/requirements.txt")
    ap.add_argument("--shapes", nargs="+", default=["demo", "smollm2-135m", "gpt2-124m"])
    ap.add_argument("--dtypes", nargs="+", default=["f32", "bf16"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--prompt-tokens", type=int, default=16)
    args = ap.parse_args()

    common = ["--prompt-tokens", str(args.prompt_tokens), "--tokens", str(args.tokens),
              "--iters", str(args.iters)]
    rows = []
    for shape, dtype in [(s, d) for s in args.shapes for d in args.dtypes]:
        root = os.path.join(tempfile.gettempdir(), "lerpscope-shapes", shape)
        ours_pair = ["--shape", shape]
        a, b = os.path.join(root, "a"), os.path.join(root, "b")
        load = ["--device", "cpu", "--dtype", dtype]
        ref = [args.python, os.path.join(HERE, "reference.py"), "--a", a, "--b", b,
               "--dtype", dtype, "--threads", str(args.threads)] + common
        samples = {}

        def add(key, value):
            samples.setdefault(key, []).append(value)

        for r in range(args.rounds):
            print(f"[{shape} {dtype}] round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
            g = run_json([args.lerpscope, "bench", "generate", *ours_pair, *load, *common,
                          "--json"], args.threads)
            add("ours_ttft", g["ttft_ms"])
            add("ours_rate", g["decode_tok_s"])
            add("ours_gbs", g["decode_gb_s"])
            add("bytes_token", g["bytes_per_token"])
            add("ours_peak", g["peak_rss_bytes"] / g["model_bytes"])
            add("ours_threads", g["threads"])
            bl = run_json([args.lerpscope, "bench", "blend", "--a", a, "--b", b, *load,
                           "--iters", str(args.iters), "--json"], args.threads)
            add("ours_blend", bl["blend_ms"])
            add("copy_gbs", bl["copy_gb_s"])
            c = run_json([args.lerpscope, "bench", "columns", *ours_pair, *load, *common,
                          "--k", str(args.k), "--json"], args.threads)
            add("ours_one", c["one_column_ms"])
            add("ours_k", min(c["reblend_ms"], c["batched_ms"]))
            add("ours_k_mode", c["faster"])
            rb = run_json(ref + ["--job", "blend"], args.threads)
            add("ref_blend", rb["blend_ms"])
            add("ref_blend_lerp", rb["blend_lerp_ms"])
            rg = run_json(ref + ["--job", "generate"], args.threads)
            add("ref_threads", rg["threads"])
            add("ref_ttft", rg["ttft_ms"])
            add("ref_rate", rg["decode_tok_s"])
            rc = run_json(ref + ["--job", "columns", "--k", str(args.k)], args.threads)
            add("ref_one", rc["one_column_ms"])
            add("ref_k", rc["reblend_ms"])
        m = {k: statistics.median(v) for k, v in samples.items() if not k.endswith("_mode")}
        mode = max(set(samples["ours_k_mode"]), key=samples["ours_k_mode"].count)
        rows.append((f"{shape} {dtype}", m, mode))

    threads = sorted({t for _, m, _ in rows for t in (m["ours_threads"], m["ref_threads"])})
    print(f"\nthreads on each side (as each reported): {threads}, "
          f"prompt {args.prompt_tokens} tokens, "
          f"{args.tokens} new, K = {args.k}; medians of {args.rounds} alternating rounds "
          f"(each side a median of {args.iters})\n")
    print("| shape | α change (ms) ours / ref [lerp] | × faster | first token after α change (ms) "
          "ours / ref | × faster | decode tok/s ours / ref | × faster | K columns / one column, "
          "ours (mode) / ref | peak memory / one model, ours | MB/token → GB/s (copy GB/s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for shape, m, mode in rows:
        print(
            f"| {shape} | {m['ours_blend']:.1f} / {m['ref_blend']:.1f} [{m['ref_blend_lerp']:.1f}] "
            f"| {m['ref_blend'] / m['ours_blend']:.1f} [{m['ref_blend_lerp'] / m['ours_blend']:.1f}] "
            f"| {m['ours_ttft']:.1f} / {m['ref_ttft']:.1f} | {m['ref_ttft'] / m['ours_ttft']:.1f} "
            f"| {m['ours_rate']:.1f} / {m['ref_rate']:.1f} | {m['ours_rate'] / m['ref_rate']:.2f} "
            f"| {m['ours_k'] / m['ours_one']:.2f} ({mode}) / {m['ref_k'] / m['ref_one']:.2f} "
            f"| {m['ours_peak']:.2f} "
            f"| {m['bytes_token'] / 1e6:.0f} → {m['ours_gbs']:.1f} ({m['copy_gbs']:.1f}) |"
        )


if __name__ == "__main__":
    main()
