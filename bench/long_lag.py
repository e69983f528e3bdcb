"""Which cells bridge long time lags? The "recall the first symbol" task.

A sequence of lag + 1 one-hot steps: step 0 holds one of 4 target symbols,
steps 1 .. lag-1 hold random distractor symbols (4 others), and the last step
holds a query marker. The network reads the sequence left to right (one
unidirectional layer, hidden 32; a bidirectional layer would see step 0 last
and make the task trivial) and must name the step-0 symbol at the query:
the information has to survive `lag` steps of distraction. Chance is 25%.

Every cell gets the same budget (Adam, gradient clipping at 1.0, at most
--steps updates of batch 32) and stops early once it solves the task (held-out
accuracy >= 99%). "Learned" means held-out accuracy >= 95% within the budget.

The classic claim: plain RNNs fail beyond 5-10 steps, LSTM bridges 1000.
This prints what these implementations actually do, with the PyTorch default
initialisation (forget bias 0) and with the forget gate's bias raised
(--forget-bias, the usual remedy for long lags: start out remembering). A cell
that fails at one lag is not tried at longer ones (marked "skipped"): a longer
lag of the same task is strictly harder, and at 1000 steps each try of an
equation cell costs minutes.

    python bench/long_lag.py [--lags 10,100,1000] [--cells lstm,gru] [--forget-bias 0,2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, machine  # noqa: E402

from speechlstm.config import CELLS  # noqa: E402
from speechlstm.train.cells import make_recurrent  # noqa: E402

TARGETS, DISTRACTORS = 4, 4
VOCAB = TARGETS + DISTRACTORS + 1  # + the query marker
BATCH, HIDDEN = 32, 32
SOLVED, LEARNED = 0.99, 0.95


def batch(lag: int, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.randint(0, TARGETS, (n,), generator=gen)
    symbols = torch.randint(TARGETS, TARGETS + DISTRACTORS, (n, lag + 1), generator=gen)
    symbols[:, 0] = target
    symbols[:, -1] = VOCAB - 1
    return nn.functional.one_hot(symbols, VOCAB).float(), target


class Recall(nn.Module):
    def __init__(self, cell: str, forget_bias: float):
        super().__init__()
        self.rnn = make_recurrent(cell, VOCAB, HIDDEN, 1, 0.0, bidirectional=False)
        self.out = nn.Linear(HIDDEN, TARGETS)
        if forget_bias:
            add_forget_bias(self.rnn, cell, forget_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(x)[:, -1])


def add_forget_bias(rnn: nn.Module, cell: str, value: float) -> None:
    """Shift the bias so the cell starts out keeping its state."""
    with torch.no_grad():
        if cell == "lstm":
            rnn.lstm.bias_ih_l0[HIDDEN : 2 * HIDDEN] += value  # gates i, f, g, o
        elif cell == "peephole":
            rnn.layers[0][0].bias_ih[HIDDEN : 2 * HIDDEN] += value
        elif cell == "coupled":
            rnn.layers[0][0].bias_ih[:HIDDEN] -= value  # f = 1 - i: a closed input gate
        elif cell == "gru":
            rnn.layers[0][0].bias_ih[HIDDEN : 2 * HIDDEN] += value  # z: keep h
        # the plain RNN has no gate to bias


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(-1) == y).float().mean())


def run(cell: str, lag: int, steps: int, forget_bias: float, seed: int) -> dict:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = Recall(cell, forget_bias)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    test_x, test_y = batch(lag, 512, torch.Generator().manual_seed(10_000 + seed))
    started = time.perf_counter()
    acc, step, solved_at = 0.0, 0, None
    for step in range(1, steps + 1):
        x, y = batch(lag, BATCH, gen)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 25 == 0 or step == steps:
            acc = accuracy(model, test_x, test_y)
            if acc >= SOLVED:
                solved_at = step
                break
    return {
        "cell": cell,
        "lag": lag,
        "forget_bias": forget_bias,
        "test_accuracy": round(acc, 3),
        "learned": acc >= LEARNED,
        "steps": step,
        "solved_at_step": solved_at,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lags", default="10,100,1000")
    parser.add_argument("--cells", default=",".join(CELLS))
    parser.add_argument("--steps", type=int, default=800, help="update budget per cell and lag")
    parser.add_argument("--forget-bias", default="0,2", help="comma list; 0 = PyTorch init")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT_DIR / "long_lag.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lags = sorted(int(v) for v in args.lags.split(","))
    cells = [c.strip() for c in args.cells.split(",")]
    biases = [float(v) for v in args.forget_bias.split(",")]
    results = []
    for bias in biases:
        failed = set()
        for lag in lags:
            for cell in cells:
                if cell in failed:
                    results.append({"cell": cell, "lag": lag, "forget_bias": bias, "skipped": True})
                    continue
                results.append(run(cell, lag, args.steps, bias, args.seed))
                print(json.dumps(results[-1]), flush=True)
                if not results[-1]["learned"]:
                    failed.add(cell)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "long_lag",
                "machine": machine(),
                "task": f"recall the first of {TARGETS} symbols after `lag` distractor steps",
                "budget_steps": args.steps,
                "batch": BATCH,
                "hidden": HIDDEN,
                "forget_biases": biases,
                "results": results,
            },
            indent=2,
        )
    )
    print(f"\nmachine: {machine()}; budget {args.steps} updates of {BATCH}, hidden {HIDDEN}")
    print("| forget bias | lag | " + " | ".join(cells) + " |")
    print("|---" * (len(cells) + 2) + "|")
    for bias in biases:
        for lag in lags:
            row = [r for r in results if r["lag"] == lag and r["forget_bias"] == bias]
            print(f"| {bias:g} | {lag} | " + " | ".join(map(_cell_text, row)) + " |")


def _cell_text(r: dict) -> str:
    if r.get("skipped"):
        return "skipped"
    verdict = "yes" if r["learned"] else "no"
    return f"{verdict} ({r['test_accuracy']:.2f}, {r['steps']} steps)"


if __name__ == "__main__":
    main()
