"""The recipe's levers, each measured alone against the shipped recipe: one table.

Every variant is the first shipped recipe (bench/ablation_base.recipe.toml,
real clips of data/sc12_clips.csv + synthesized speech via --add) with one
change, trained on the CPU with `speechlstm train` into runs/abl/NAME. The
table reads each run's metrics.json: best validation accuracy (selection)
and the test-list accuracy of that checkpoint (fp32), and the difference
from the baseline of the same schedule. Screening runs use a 20-epoch
schedule (a 40-epoch run takes about 17 minutes here); `e40` variants use
the recipe's own.

    python bench/ablation.py run NAME [NAME ...]   # train the variants not yet trained
    python bench/ablation.py stream NAME [NAME ...]  # + the stream (bench/streaming.py, int8)
    python bench/ablation.py report                # the table (bench/out/ablation.{json,md})
    python bench/ablation.py list

The data folders are the ones `make default-model` builds (data/sc12_real,
data/synth_sc12).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, ROOT, machine  # noqa: E402

# The screening's base: the first shipped recipe (40 epochs, width 96). The
# `final` rows are the shipped recipe as it is now (speechlstm/assets).
RECIPE = ROOT / "bench/ablation_base.recipe.toml"
SHIPPED_RECIPE = ROOT / "recipes/sc12.recipe.toml"
REAL, SYNTH = ROOT / "data/sc12_real", ROOT / "data/synth_sc12"
RUNS = ROOT / "runs/abl"
TEACHERS = "runs/abl/e40/best.pt,runs/realonly/best.pt,runs/speed/best.pt"
SCREEN = ["train.epochs=20", "train.patience=0"]

# name: (what changes, --set overrides, train on synthetic speech too). Levers
# that lost were removed from the trainer; their rows stay in docs/models/sc12.md.
VARIANTS: dict[str, tuple[str, list[str], bool]] = {
    "e20": ("baseline, 20-epoch screening schedule", SCREEN, True),
    "e20-seed1": ("baseline, seed 1 (seed spread)", SCREEN + ["train.seed=1"], True),
    "e20-realonly": ("no synthetic speech (mix ratio 0)", SCREEN, False),
    "e20-synth50": (
        "synthetic share of draws 0.5 per class",
        SCREEN + ["data.extra_share=0.5"],
        True,
    ),
    "e20-synth20": (
        "synthetic share of draws 0.2 per class",
        SCREEN + ["data.extra_share=0.2"],
        True,
    ),
    "e20-pitch": ("pitch / VTLP warp 0.1", SCREEN + ["augment.pitch=0.1"], True),
    "e20-nospec": ("SpecAugment off", SCREEN + ["augment.spec_augment=false"], True),
    "e20-spec2x": (
        "SpecAugment doubled (masks 25 frames / 12 bins)",
        SCREEN + ["augment.time_mask_frames=25", "augment.freq_mask_bins=12"],
        True,
    ),
    "e20-ls0": ("label smoothing 0 (recipe 0.1)", SCREEN + ["train.label_smoothing=0"], True),
    "e20-vocab": (
        "+ synthesized speech of 497 other words as _unknown_ (data/vocab_unknown)",
        SCREEN,
        True,
    ),
    "e20-h128": ("width 128 (recipe 96)", SCREEN + ["model.hidden_size=128"], True),
    "e20-l3": ("depth 3 layers (recipe 2)", SCREEN + ["model.num_layers=3"], True),
    "e20-fs1": ("no frame stacking (recipe 2)", SCREEN + ["model.frame_stack=1"], True),
    "e20-distill": (
        "distilled from a 3-model ensemble (test 0.878-0.883 each)",
        SCREEN + [f"train.teacher={TEACHERS}", "train.distill_weight=0.5"],
        True,
    ),
    "e40": ("baseline, the recipe's 40 epochs (= the first shipped run)", [], True),
    "e60": ("schedule 60 epochs", ["train.epochs=60", "train.patience=15"], True),
    "e40-realonly": ("no synthetic speech (mix ratio 0)", [], False),
    # The shipped recipe (recipes/sc12.recipe.toml), the levers that
    # helped combined: seed 0 is `make default-model`'s run, seed 1 the spread.
    "final": ("shipped recipe (combination), seed 0 = make default-model", [], True),
    "final-seed1": ("shipped recipe (combination), seed 1", ["train.seed=1"], True),
    "final-vocab": (
        "shipped recipe + synthesized other words as _unknown_ (as e20-vocab)",
        [],
        True,
    ),
}
FINAL = {"final", "final-seed1", "final-vocab"}
# Variants with a further training source: the words of the synthesized
# vocabulary (scripts/synth_vocab.sh) outside the 35 Speech Commands words (the negatives
# a stream meets: most false alarms are other words taken for commands).
VOCAB = ROOT / "data/synth_vocab"
EXTRA = {"e20-vocab": ROOT / "data/vocab_unknown", "final-vocab": ROOT / "data/vocab_unknown"}
# Runs trained before this script existed, with the same command line (e40
# is the run the first shipped model came from; final, the second).
EARLIER = {
    "final": RUNS / "final",  # the shipped run before final-vocab (was runs/default)
    "e60": RUNS / "epochs60",
    "e40-realonly": ROOT / "runs/realonly",
    "e40-speed": ROOT / "runs/speed",
}


def run_dir(name: str) -> Path:
    return EARLIER.get(name, RUNS / name)


def vocab_unknown(out: Path) -> Path:
    """Links to the synthesized vocabulary's clips of words outside Speech Commands."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from vocab_unknown import link_unknown

    return link_unknown(VOCAB, out)


def train(name: str) -> None:
    what, overrides, with_synth = VARIANTS[name]
    out = run_dir(name)
    if (out / "metrics.json").is_file():
        print(f"{name}: done already ({out})")
        return
    cmd = [str(ROOT / ".venv/bin/speechlstm"), "train", str(REAL), "--out", str(out)]
    if (out / "last.pt").is_file():
        cmd.append("--resume")  # an interrupted variant: its settings are in the run
    else:
        recipe = SHIPPED_RECIPE if name in FINAL else RECIPE
        cmd += ["--config", str(recipe), "--device", "cpu"]
        if with_synth:
            cmd += ["--add", str(SYNTH)]
        if name in EXTRA:
            cmd += ["--add", str(vocab_unknown(EXTRA[name]))]
        for item in overrides:
            cmd += ["--set", item]
    print(f"{name}: {what}", flush=True)
    started = time.perf_counter()
    with open(RUNS / f"{name}.log", "a") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    print(f"{name}: trained in {time.perf_counter() - started:.0f} s", flush=True)


def stream(name: str) -> None:
    """The variant in a stream: bench/streaming.py on the test speakers, int8, with
    the detector defaults (0.8 / 300 ms), into bench/out/streaming_NAME.json."""
    out = run_dir(name)
    if not (out / "best.pt").is_file():
        raise SystemExit(f"{name}: not trained yet (python bench/ablation.py run {name})")
    model = out / "model.int8.onnx"
    sl = str(ROOT / ".venv/bin/speechlstm")
    if not model.is_file():
        subprocess.run([sl, "export", str(out / "best.pt"), "-o", str(model), "--int8"],
                       check=True, cwd=ROOT)  # fmt: skip
    print(f"{name}: streaming benchmark", flush=True)
    subprocess.run([sys.executable, str(ROOT / "bench/streaming.py"), "--model", str(model),
                    "--out", str(stream_file(name))], check=True, cwd=ROOT)  # fmt: skip


def stream_file(name: str) -> Path:
    return OUT_DIR / f"streaming_{name}.json"


def row(name: str, base: dict | None) -> dict | None:
    path = run_dir(name) / "metrics.json"
    if not path.is_file():
        return None
    m = json.loads(path.read_text())
    test, val = m["test_accuracy"], m["best_val_accuracy"]
    n_train = m["summary"]["clips"]["train"]
    seconds = sum(n_train / h["clips_per_s"] for h in m["history"] if h.get("clips_per_s"))
    out = {
        "variant": name,
        "change": VARIANTS[name][0],
        "epochs": len(m["history"]),
        "best_epoch": m["best_epoch"],
        "val_accuracy": round(val, 4),
        "test_accuracy": round(test, 4),
        "test_balanced": round(m["test_balanced_accuracy"], 4),
        "params": m["n_params"],
        "train_seconds": round(seconds),  # training steps only, not validation
    }
    if base is not None:
        out["d_val"] = round(val - base["val_accuracy"], 4)
        out["d_test"] = round(test - base["test_accuracy"], 4)
    if stream_file(name).is_file():
        t = json.loads(stream_file(name).read_text())["test_speakers"]
        out["stream"] = {k: t[k] for k in ("matched", "false_per_hour", "latency_median_ms")}
    return out


def report() -> None:
    rows = []
    bases = {"e20": row("e20", None), "e40": row("e40", None)}
    for name in VARIANTS:
        base = bases["e20"] if name.startswith("e20") else bases["e40"]
        if name == "final-vocab":
            base = row("final", None)  # the one change against the shipped recipe
        r = row(name, base)
        if r is not None:
            rows.append(r)
    result = {"benchmark": "ablation", "machine": machine(), "split": "test", "rows": rows}
    lines = [
        "| variant | change | val | test | Δval | Δtest | best epoch | stream matched / FA/h |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        st = r.get("stream")
        st = f"{st['matched']:.3f} / {st['false_per_hour']:.0f}" if st else ""
        lines.append(
            f"| {r['variant']} | {r['change']} | {r['val_accuracy']:.3f} | "
            f"{r['test_accuracy']:.3f} | {r.get('d_val', 0):+.3f} | {r.get('d_test', 0):+.3f} | "
            f"{r['best_epoch']}/{r['epochs']} | {st} |"
        )
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "ablation.json").write_text(json.dumps(result, indent=2))
    (OUT_DIR / "ablation.md").write_text("\n".join(lines) + "\n")
    print(f"machine: {result['machine']}")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("names", nargs="+", choices=sorted(VARIANTS))
    streams = sub.add_parser("stream")
    streams.add_argument("names", nargs="+", choices=sorted(VARIANTS))
    sub.add_parser("report")
    sub.add_parser("list")
    args = parser.parse_args()
    if args.cmd == "run":
        RUNS.mkdir(parents=True, exist_ok=True)
        for name in args.names:
            train(name)
        report()
    elif args.cmd == "stream":
        for name in args.names:
            stream(name)
        report()
    elif args.cmd == "report":
        report()
    else:
        for name, (what, overrides, synth) in VARIANTS.items():
            print(f"{name:14s} {what}  [{' '.join(overrides)}]{'' if synth else ' (no --add)'}")


if __name__ == "__main__":
    main()
