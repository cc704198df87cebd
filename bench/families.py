#!/usr/bin/env python3
"""Each decoder family's decode against Llama's, in one run: no family on a slow path.

Runs `lerpscope bench generate --shape S --json` for a Llama shape and each family's shape,
interleaved over several rounds (so all see the same machine), greedy by default (sampling a
random model's flat distribution over Gemma's 262k-token vocabulary costs more than the
model), and prints one Markdown table:
the median decode rate, the bytes one token streams (every weight once) and the GB/s that
implies, and that GB/s as a fraction of the Llama shape's. The issue's bar is 0.9.

    python3 bench/families.py --rounds 3 --dtype bf16

The family shapes are random pairs with the sizes of Qwen2.5-0.5B, Gemma 3 270M and
Phi-3-mini with 8 of its 32 layers (a full Phi-3-mini pair does not fit 24 GB); each is
written once under the temporary directory (bf16 files).
"""
import argparse
import json
import os
import statistics
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lerpscope", default=os.path.join(ROOT, "target/release/lerpscope"))
    ap.add_argument("--llama", default="smollm2-135m", help="the Llama shape to compare with")
    ap.add_argument("--shapes", nargs="+", default=["qwen2.5-0.5b", "gemma3-270m", "phi3-mini-8l"])
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--temperature", default="0",
                    help="0 (greedy) times the model alone: a random shape's near-flat "
                         "distribution makes top-p sampling's nucleus most of the vocabulary")
    args = ap.parse_args()
    shapes = [args.llama] + args.shapes
    runs = {s: [] for s in shapes}
    for r in range(args.rounds):
        for s in shapes:
            cmd = [args.lerpscope, "bench", "generate", "--shape", s, "--dtype", args.dtype,
                   "--device", "cpu", "--iters", str(args.iters), "--tokens", str(args.tokens),
                   "--temperature", args.temperature, "--json"]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            v = json.loads(out.strip().splitlines()[-1])
            runs[s].append(v)
            print(f"round {r + 1} {s}: {v['decode_tok_s']:.1f} tok/s, {v['decode_gb_s']:.2f} GB/s",
                  flush=True)
    med = {s: statistics.median(v["decode_gb_s"] for v in runs[s]) for s in shapes}
    print(f"\n| shape ({args.dtype}) | architecture | decode tok/s | MB/token | GB/s | × {args.llama} |")
    print("|---|---|---|---|---|---|")
    for s in shapes:
        v = runs[s][0]
        rate = statistics.median(x["decode_tok_s"] for x in runs[s])
        print(f"| {s} | {v['architecture']} | {rate:.1f} | {v['bytes_per_token'] / 1e6:.0f} | "
              f"{med[s]:.2f} | {med[s] / med[args.llama]:.2f} |")


if __name__ == "__main__":
    main()
