#!/usr/bin/env python3
"""The jobs `lerpscope bench` times, done the way a researcher does them without lerpscope:
both endpoints loaded with Hugging Face transformers on PyTorch (CPU), the α change as an
in-place loop over the state dict, and `generate` for the tokens.

Same pair directories, dtype, prompt (token ids 1..N), token counts, sampling settings and
thread count as lerpscope's side; prints one JSON object per job, with the same keys.

    python bench/reference.py --a A --b B --job generate --dtype f32 --threads 2
"""
import argparse
import json
import os
import resource
import statistics
import time

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def load_state(directory, dtype):
    """Every safetensors shard of a model directory as one dict of tensors in `dtype`."""
    state = {}
    for f in sorted(os.listdir(directory)):
        if f.endswith(".safetensors"):
            for k, v in load_file(os.path.join(directory, f)).items():
                state[k] = v.to(dtype)
    return state


class Pair:
    def __init__(self, a, b, dtype):
        self.model = AutoModelForCausalLM.from_pretrained(a, dtype=DTYPES[dtype]).eval()
        self.sa = load_state(a, DTYPES[dtype])
        self.sb = load_state(b, DTYPES[dtype])
        params = self.model.state_dict()
        # Checkpoints may or may not carry the `transformer.` prefix or a tied lm_head.
        self.targets = []
        for name, p in params.items():
            src = name if name in self.sa else name.removeprefix("transformer.")
            if src in self.sa and p.is_floating_point():
                self.targets.append((p, self.sa[src], self.sb[src]))

    @torch.no_grad()
    def set_alpha(self, alpha):
        """The usual loop: every tensor of the state dict rewritten in place with
        θ_A + α·(θ_B − θ_A), as the formula reads."""
        for p, a, b in self.targets:
            p.copy_(a + alpha * (b - a))

    @torch.no_grad()
    def set_alpha_lerp(self, alpha):
        """The same loop at its best in PyTorch: one fused lerp per tensor, no temporaries."""
        for p, a, b in self.targets:
            torch.lerp(a, b, alpha, out=p)

    @torch.no_grad()
    def generate(self, prompt, tokens):
        return self.model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=True,
            temperature=0.8,
            top_p=0.95,
            top_k=0,
            repetition_penalty=1.1,
            pad_token_id=0,
        )


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def med_ms(v):
    return statistics.median(v) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--job", choices=["blend", "generate", "columns"], required=True)
    ap.add_argument("--dtype", choices=list(DTYPES), default="f32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--iters", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pair = Pair(args.a, args.b, args.dtype)
    prompt = torch.arange(1, args.prompt_tokens + 1).unsqueeze(0)
    out = {
        "bench": args.job,
        "side": "reference",
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "prompt_tokens": args.prompt_tokens,
        "tokens": args.tokens,
        "iters": args.iters,
    }
    pair.set_alpha(0.5)
    pair.generate(prompt, 2)  # warm-up
    if args.job == "blend":
        out["blend_ms"] = med_ms(
            [timed(lambda: pair.set_alpha(0.3 if i % 2 else 0.7)) for i in range(args.iters)]
        )
        out["blend_lerp_ms"] = med_ms(
            [timed(lambda: pair.set_alpha_lerp(0.3 if i % 2 else 0.7)) for i in range(args.iters)]
        )
    elif args.job == "generate":
        blend, ttft, rate = [], [], []
        for i in range(args.iters):
            alpha = 0.3 if i % 2 == 0 else 0.7
            tb = timed(lambda: pair.set_alpha(alpha))
            t1 = timed(lambda: pair.generate(prompt, 1))
            tn = timed(lambda: pair.generate(prompt, args.tokens))
            blend.append(tb)
            ttft.append(tb + t1)
            # decode rate after the first token, as lerpscope reports it
            rate.append((args.tokens - 1) / max(tn - t1, 1e-9))
        out.update(
            blend_ms=med_ms(blend),
            ttft_ms=med_ms(ttft),
            decode_tok_s=statistics.median(rate),
        )
    else:
        alphas = [i / (args.k - 1) if args.k > 1 else 0.5 for i in range(args.k)]
        one, seq = [], []
        for _ in range(args.iters):
            one.append(timed(lambda: (pair.set_alpha(alphas[0]), pair.generate(prompt, args.tokens))))

            def all_columns():
                for a in alphas:
                    pair.set_alpha(a)
                    pair.generate(prompt, args.tokens)

            seq.append(timed(all_columns))
        out.update(
            k=args.k,
            one_column_ms=med_ms(one),
            reblend_ms=med_ms(seq),
            reblend_ratio=statistics.median(seq) / statistics.median(one),
        )
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(out))


if __name__ == "__main__":
    main()
