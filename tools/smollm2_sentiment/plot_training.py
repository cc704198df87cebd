"""Plot the SmolLM2 demo adapters' training loss from OUT/training/{negative,positive}.jsonl.

    python3 tools/smollm2_sentiment/plot_training.py [--out assets/smollm2-sentiment]

Writes OUT/training/loss.png: the loss of every step (faint) and its trailing mean over 25 steps.
Needs matplotlib.
"""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="assets/smollm2-sentiment")
    ap.add_argument("--window", type=int, default=25)
    args = ap.parse_args()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for side, colour in [("negative", "#c0392b"), ("positive", "#2471a3")]:
        path = os.path.join(args.out, "training", f"{side}.jsonl")
        rows = [json.loads(line) for line in open(path)]
        steps = [r["step"] for r in rows]
        loss = [r["loss"] for r in rows]
        mean = [sum(loss[max(0, i - args.window + 1):i + 1]) / (i - max(0, i - args.window + 1) + 1)
                for i in range(len(loss))]
        ax.plot(steps, loss, color=colour, alpha=0.2, linewidth=0.8)
        ax.plot(steps, mean, color=colour, linewidth=2,
                label=f"{side} (trailing mean of {args.window})")
    ax.set_xlabel("step (batch of 8 replies)")
    ax.set_ylabel("cross-entropy on the reply (nats/token)")
    ax.set_title("SmolLM2-135M-Instruct LoRA adapters: training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = os.path.join(args.out, "training", "loss.png")
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
