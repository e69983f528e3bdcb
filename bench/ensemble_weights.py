"""Learned ensemble weights for the cascade's second stage (issue 44's lever):
instead of averaging the first stage's and the verifier's probabilities with a
fixed 0.5, learn how to combine them on the windows the second stage is asked
to judge: every window the first stage fires on in the TRAINING speakers'
streams, labelled by the truth (`bench/stage1_windows.py`: windows on commands
and on other words of the command stream; `data mine`: windows on the 5 hours
of negatives, all `_unknown_`).

Two combiners, each fitted and scored with 5-fold cross-validation on those
windows:
- `weight`: one scalar w, p = (1 - w) * verifier + w * first stage, w chosen
  by log-loss on the training folds;
- `stacker`: multinomial logistic regression over both models' log
  probabilities (24 inputs, the verifier's 12 labels out), L2 strength chosen
  on the training folds.
Scored as the stream uses them: for each window the candidate label is the
first stage's most likely command; a window on that command must be kept, one
on anything else dropped. The table gives the share of command windows kept
when at most 1, 2 and 5 % of the other windows are kept, beside the verifier
alone and the fixed 0.5 average. The chosen combiner, refitted on all windows,
is written as JSON for `bench/streaming.py --stacker FILE`.

    python bench/stage1_windows.py data/streams_train60 data/stage1_windows
    speechlstm data mine data/streams/train_negatives.wav --threshold 0.5 -o data/mined_r2
    python bench/ensemble_weights.py data/stage1_windows data/mined_r2 \
        [--model sc12] [--verifier sc12] [--out bench/out/ensemble_weights.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, machine  # noqa: E402

from speechlstm.audio import load_audio  # noqa: E402
from speechlstm.labels import BACKGROUND_LABELS  # noqa: E402
from speechlstm.runtime import OnnxRecognizer, resolve_model  # noqa: E402
from speechlstm.shipped_verifier import resolve_verifier  # noqa: E402

FLOOR = 1e-6  # log-probability floor: a model's 0 must not become -inf
KEEP_NEGATIVE_SHARES = (0.01, 0.02, 0.05)


def windows(folders: list[Path]) -> list[tuple[Path, str]]:
    """(file, truth label) for every WAV under each dataset folder's label folders."""
    out = []
    for folder in folders:
        for wav in sorted(folder.glob("*/*.wav")):
            out.append((wav, wav.parent.name))
    if not out:
        raise SystemExit(f"no windows under {', '.join(map(str, folders))}")
    return out


def features(first: OnnxRecognizer, second: OnnxRecognizer, files) -> np.ndarray:
    """Both models' log probabilities per window: [first (its labels) | second]."""
    rows = []
    for i, (path, _) in enumerate(files):
        audio = load_audio(path, second.sample_rate)
        rows.append(np.concatenate([first.predict_clip(audio), second.predict_clip(audio)]))
        if (i + 1) % 500 == 0:
            print(f"  {i + 1}/{len(files)} windows", file=sys.stderr)
    return np.log(np.maximum(np.array(rows, np.float64), FLOOR))


class Mix:
    """p = (1 - w) * second + w * first, on the second's labels."""

    def __init__(self, first_labels, second_labels):
        index = {lab: i for i, lab in enumerate(first_labels)}
        self.n_first = len(first_labels)
        self.map = np.array([index.get(lab, -1) for lab in second_labels])
        self.w = 0.5

    def probs(self, x: np.ndarray, w: float | None = None) -> np.ndarray:
        w = self.w if w is None else w
        first = np.exp(x[:, : self.n_first])
        second = np.exp(x[:, self.n_first :])
        mapped = np.where(self.map >= 0, first[:, np.maximum(self.map, 0)], second)
        p = (1 - w) * second + w * mapped
        return p / p.sum(1, keepdims=True)

    def fit(self, x: np.ndarray, y: np.ndarray) -> Mix:
        grid = np.round(np.arange(0.0, 1.0001, 0.05), 2)
        self.w = float(min(grid, key=lambda w: log_loss(self.probs(x, w), y)))
        return self


class Stacker:
    """Multinomial logistic regression over both models' log probabilities."""

    def __init__(self, n_labels: int, strength: float | None = None):
        self.n_labels, self.strength = n_labels, strength

    def fit(self, x: np.ndarray, y: np.ndarray) -> Stacker:
        from sklearn.linear_model import LogisticRegression

        def model(c):
            return LogisticRegression(C=c, max_iter=2000)

        if self.strength is None:  # L2 strength by an inner split of the training folds
            inner = folds(len(y), 4, seed=1)
            self.strength = min(
                (0.01, 0.1, 1.0, 10.0),
                key=lambda c: np.mean(
                    [
                        log_loss(self._wrap(model(c).fit(x[tr], y[tr])).probs(x[te]), y[te])
                        for tr, te in inner
                    ]  # fmt: skip
                ),
            )
        self._wrap(model(self.strength).fit(x, y))
        return self

    def _wrap(self, lr) -> Stacker:
        # Classes never seen (e.g. _silence_) get a bias far below the rest.
        self.coef = np.zeros((self.n_labels, lr.coef_.shape[1]))
        self.bias = np.full(self.n_labels, -30.0)
        self.coef[lr.classes_] = lr.coef_
        self.bias[lr.classes_] = lr.intercept_
        return self

    def probs(self, x: np.ndarray) -> np.ndarray:
        z = x @ self.coef.T + self.bias
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(1, keepdims=True)


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], FLOOR))))


def folds(n: int, k: int, seed: int = 0):
    order = np.random.default_rng(seed).permutation(n)
    parts = np.array_split(order, k)
    return [(np.concatenate(parts[:i] + parts[i + 1 :]), parts[i]) for i in range(k)]


def kept_at(scores: np.ndarray, positive: np.ndarray, shares=KEEP_NEGATIVE_SHARES) -> dict:
    """Share of positive windows kept at the threshold that keeps at most
    `share` of the negative ones."""
    neg = np.sort(scores[~positive])[::-1]
    out = {}
    for share in shares:
        allowed = int(np.floor(share * neg.size))
        # Keep strictly above the (allowed+1)-th highest negative score.
        cut = neg[allowed] if allowed < neg.size else -np.inf
        out[f"negatives_kept_{share:g}"] = round(float(np.mean(scores[positive] > cut)), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+", help="dataset folders of windows")
    parser.add_argument("--model", default="sc12")
    parser.add_argument("--verifier", default="sc12")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "ensemble_weights.json")
    args = parser.parse_args()
    started = time.perf_counter()
    first = OnnxRecognizer(resolve_model(args.model), threads=1)
    second = OnnxRecognizer(resolve_verifier(args.verifier), threads=1)
    files = windows(args.folders)
    labels = list(second.labels)
    unknown = [lab for lab in {lab for _, lab in files} if lab not in labels]
    if unknown:
        raise SystemExit(f"window labels the verifier lacks: {', '.join(sorted(unknown))}")
    y = np.array([labels.index(lab) for _, lab in files])
    x = features(first, second, files)
    # The stream's candidate: the first stage's most likely command on the window.
    commands = [i for i, lab in enumerate(first.labels) if lab not in BACKGROUND_LABELS]
    fired = [first.labels[commands[j]] for j in np.argmax(x[:, commands], axis=1)]
    cand = np.array([labels.index(lab) for lab in fired])
    positive = cand == y
    combiners = {
        "verifier alone": lambda: _Fixed(Mix(first.labels, labels), 0.0),
        "first stage alone": lambda: _Fixed(Mix(first.labels, labels), 1.0),
        "average 0.5 (measured in the stream)": lambda: _Fixed(Mix(first.labels, labels), 0.5),
        "weight (learned w)": lambda: Mix(first.labels, labels),
        "stacker (logistic regression)": lambda: Stacker(len(labels)),
    }
    table = {}
    for name, make in combiners.items():
        scores = np.zeros(len(y))
        losses, chosen = [], []
        for tr, te in folds(len(y), 5):
            c = make().fit(x[tr], y[tr])
            p = c.probs(x[te])
            scores[te] = p[np.arange(len(te)), cand[te]]
            losses.append(log_loss(p, y[te]))
            chosen.append(c.strength if isinstance(c, Stacker) else c.w)
        table[name] = {"cv_log_loss": round(float(np.mean(losses)), 4),
                       "chosen_per_fold": chosen, **kept_at(scores, positive)}  # fmt: skip
        print(f"{name:40s} {table[name]}", file=sys.stderr)
    stacker = Stacker(len(labels)).fit(x, y)
    weight = Mix(first.labels, labels).fit(x, y)
    result = {
        "benchmark": "ensemble_weights", "machine": machine(),
        "model": args.model, "verifier": args.verifier,
        "folders": [str(f) for f in args.folders],
        "windows": {"all": len(y), "on_the_candidate_command": int(positive.sum()),
                    "other": int((~positive).sum())},
        "cross_validated": table,
        "fitted_on_all": {
            "weight": weight.w,
            "stacker": {"labels": labels, "first_labels": list(first.labels),
                        "strength": stacker.strength, "coef": stacker.coef.round(6).tolist(),
                        "bias": stacker.bias.round(6).tolist()},
        },
        "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "fitted_on_all"}, indent=2))
    print(f"learned weight {weight.w}; stacker strength {stacker.strength}; wrote {args.out}")


class _Fixed:
    """A Mix whose weight is given, not learned (the baselines)."""

    def __init__(self, mix: Mix, w: float):
        self.mix, self.w = mix, w

    def fit(self, x, y) -> _Fixed:
        return self

    def probs(self, x: np.ndarray) -> np.ndarray:
        return self.mix.probs(x, self.w)


if __name__ == "__main__":
    main()
