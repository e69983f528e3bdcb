"""The experiment runner: train, resume, export, measure and tabulate the named
variants of bench/experiments.toml.

    python bench/experiments.py list [--group G]
    python bench/experiments.py run NAME [NAME ...]     # or --group G
    python bench/experiments.py report --group G        # the table only

`run` trains what has no metrics.json yet (resuming a run with last.pt),
exports it to int8 ONNX (fp32 where int8 misses export's agreement check),
and measures it on the real subset's validation and test lists (12-class,
bench/synthetic_to_real.real_accuracy; an embedding model is measured through
its embedding). One training at a time: the development machine has two cores.
Each run's measurement is kept in RUN/real.json; the group's table goes to
bench/out/experiments_GROUP.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import experiment_data  # noqa: E402
from common import OUT_DIR, ROOT, machine, require_subset  # noqa: E402

TABLE = Path(__file__).resolve().parent / "experiments.toml"
SL = str(ROOT / ".venv/bin/speechlstm")
RUNS = ROOT / "runs/exp"
KEYS = {"group", "what", "data", "add", "recipe", "set", "flags", "encoder", "frontend"}
KEYS |= {"run", "copy_to", "sources"}

# Learning sources under trial (speechlstm/train/sources.py): name -> a factory
# taking the run's RunConfig and giving the source (or None: off). An
# experiment that names some (`sources = ["NAME"]`) trains in this process
# with the shipped sources plus these (run_training's learning_sources).
# Trying a lever adds its file in bench/ and a line here; rejecting it
# deletes both (DEVELOPERS.md, "Where a lever lives"). None is under trial now.
LEVERS: dict[str, Callable] = {}


@dataclass(frozen=True)
class Experiment:
    name: str
    group: str
    what: str
    data: str
    recipe: str = ""  # none: the defaults, as a user's plain `speechlstm train` gets them
    add: tuple[str, ...] = ()
    set: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    encoder: str = ""
    frontend: str = "mfcc"
    run: str = ""
    copy_to: str = ""
    sources: tuple[str, ...] = ()  # learning sources under trial (LEVERS)
    needs: tuple[str, ...] = field(default=())  # experiments whose teacher it uses

    @property
    def out(self) -> Path:
        return ROOT / self.run if self.run else RUNS / self.name

    @property
    def is_embedding_model(self) -> bool:
        return self.frontend == "embedding"


def load_table(path: Path = TABLE) -> dict[str, Experiment]:
    table = tomllib.loads(path.read_text())
    defaults = table.pop("defaults", {})
    out = {}
    for name, row in table.items():
        unknown = set(row) - KEYS
        if unknown:
            raise SystemExit(f"{path}: [{name}] has unknown keys {sorted(unknown)}")
        merged = {**defaults, **row}
        for key in ("add", "set", "flags", "sources"):
            merged[key] = tuple(merged.get(key, ()))
        needs = tuple(
            v.split(":", 1)[1]
            for item in merged["set"]
            for v in [item.split("=", 1)[1]]
            if v.startswith("@teacher:")
        )
        out[name] = Experiment(name=name, needs=needs, **merged)
    for exp in out.values():
        for need in exp.needs:
            if need not in out or not out[need].is_embedding_model:
                raise SystemExit(
                    f"{path}: [{exp.name}] uses @teacher:{need}, not an embedding-model experiment"
                )
    return out


def resolve(value: str, table: dict[str, Experiment]) -> str:
    """An "@" value built (or found) as a path; anything else as it is."""
    if not value.startswith("@"):
        return value
    kind, _, arg = value[1:].partition(":")
    if kind == "takes":
        return str(experiment_data.take_set(int(arg)))
    if kind == "real_unknown":
        return str(experiment_data.real_unknown())
    if kind == "synth_realnoise":
        return str(experiment_data.synth_real_noise(require_subset()))
    if kind == "synth":
        return str(experiment_data.synth_variant(arg))
    if kind == "encoder":
        return str(experiment_data.measurement_encoder(require_subset(), arg))
    if kind == "teacher":
        run(table[arg], table)
        return str(table[arg].out / "teacher.safetensors")
    raise SystemExit(f"unknown value {value!r} in {TABLE}")


def trained(exp: Experiment) -> bool:
    return (exp.out / "metrics.json").is_file()


def train(exp: Experiment, table: dict[str, Experiment]) -> None:
    out = exp.out
    cmd = [SL, "train", resolve(exp.data, table), "--out", str(out), "--no-progress"]
    if (out / "last.pt").is_file():
        cmd.append("--resume")  # an interrupted run: its settings are in the run
    else:
        if exp.recipe:
            cmd += ["--config", str(ROOT / exp.recipe)]
        cmd += ["--device", "cpu", *exp.flags]
        for folder in exp.add:
            cmd += ["--add", resolve(folder, table)]
        if exp.encoder:
            cmd += ["--encoder", resolve(exp.encoder, table)]
        if exp.is_embedding_model:
            cmd += ["--frontend", "embedding"]
        for item in exp.set:
            key, _, value = item.partition("=")
            cmd += ["--set", f"{key}={resolve(value, table)}"]
    print(f"{exp.name}: {exp.what}", flush=True)
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    if exp.sources:
        train_with_levers(exp, table)
    else:
        with open(out.parent / f"{out.name}.log", "a") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    wall = time.perf_counter() - started
    (out / "wall_s.txt").write_text(f"{wall:.0f}\n")
    print(f"{exp.name}: trained in {wall:.0f} s", flush=True)


def train_with_levers(exp: Experiment, table: dict[str, Experiment]) -> None:
    """`exp` trained in this process with its LEVERS beside the shipped sources
    (as `speechlstm train` would, on the CPU; a run with last.pt resumes)."""
    from speechlstm.config import RunConfig
    from speechlstm.config_text import layered_config
    from speechlstm.train.distill import shipped_sources
    from speechlstm.train.run import run_training

    unknown = sorted(set(exp.sources) - set(LEVERS))
    if unknown or exp.flags or exp.is_embedding_model:
        raise SystemExit(f"[{exp.name}]: sources {unknown} unknown, or with flags or a frontend")
    sets = [f"{k}={resolve(v, table)}" for k, _, v in (i.partition("=") for i in exp.set)]
    flags = {
        "train.device": "cpu",
        "data.extra": [resolve(a, table) for a in exp.add] or None,
        "train.encoder": resolve(exp.encoder, table) if exp.encoder else None,
    }
    cfg = layered_config(RunConfig(), ROOT / exp.recipe if exp.recipe else None, sets, flags)
    levers = [LEVERS[name](cfg) for name in exp.sources]
    sources = shipped_sources(cfg) + [s for s in levers if s is not None]
    resume = (exp.out / "last.pt").is_file()
    data = resolve(exp.data, table)
    run_training(data, exp.out, cfg, resume=resume, show_progress=False, learning_sources=sources)


def model_of(exp: Experiment) -> Path | None:
    for kind in ("int8", "fp32"):
        path = exp.out / f"model.{kind}.onnx"
        if path.is_file():
            return path
    return None


def export(exp: Experiment) -> Path:
    """int8 ONNX, or fp32 where int8 disagrees with fp32 on more than 1% of clips."""
    model = model_of(exp)
    if model is not None:
        return model
    with open(exp.out.parent / f"{exp.out.name}.log", "a") as log:
        model = exp.out / "model.int8.onnx"
        cmd = [SL, "export", str(exp.out / "best.pt"), "-o", str(model), "--int8"]
        if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode:
            model = exp.out / "model.fp32.onnx"
            cmd = [SL, "export", str(exp.out / "best.pt"), "-o", str(model)]
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    return model


def embedding_model_accuracy(model: Path, subset: Path, split: str) -> dict:
    """An embedding model's 12-class accuracy on the subset's list, through the embedding."""
    import numpy as np

    from speechlstm import metrics
    from speechlstm.audio import crop_loudest, float_to_int16, load_audio
    from speechlstm.data.datasets import discover
    from speechlstm.labels import SILENCE, UNKNOWN
    from speechlstm.train.embedding_model.model_file import EmbeddingModel

    t = EmbeddingModel(model)
    clips = discover(subset).split(split)
    targets, waves = [], []
    for clip in clips:
        word = clip.word if clip.word in t.labels else UNKNOWN
        word = SILENCE if clip.word == SILENCE else word
        targets.append(t.labels.index(word))
        # As the training bank holds it, so the cached embeddings are found.
        waves.append(float_to_int16(crop_loudest(load_audio(clip.path), 16000)))
    audio = np.stack(waves)
    pred = t.logits(audio, f"{split} clips").argmax(1)
    cm = metrics.confusion_matrix(np.array(targets), pred, len(t.labels))
    per_class = metrics.per_class(cm, t.labels)
    return {
        "accuracy_12class": round(metrics.accuracy(cm), 4),
        "balanced_accuracy": round(metrics.balanced_accuracy(cm), 4),
        "per_class_recall": {k: round(v["recall"], 3) for k, v in per_class.items()},
    }


def measure(exp: Experiment, subset: Path) -> dict | None:
    from synthetic_to_real import real_accuracy

    if not trained(exp):
        return None
    if exp.is_embedding_model:
        artefact = exp.out / "teacher.safetensors"
    else:
        artefact = export(exp)
        if exp.copy_to:
            shutil.copyfile(artefact, ROOT / exp.copy_to)
    cached = exp.out / "real.json"
    if cached.is_file() and cached.stat().st_mtime >= artefact.stat().st_mtime:
        return {**json.loads(cached.read_text()), "what": exp.what}
    if exp.is_embedding_model:
        val, test = (embedding_model_accuracy(artefact, subset, s) for s in ("validation", "test"))
    else:
        val, test = (real_accuracy(artefact, subset, s) for s in ("validation", "test"))
    metrics = json.loads((exp.out / "metrics.json").read_text())
    wall = exp.out / "wall_s.txt"
    row = {
        "run": exp.name,
        "what": exp.what,
        "model": artefact.name,
        "best_epoch": metrics.get("best_epoch"),
        "val_accuracy": val["accuracy_12class"],
        "test_accuracy": test["accuracy_12class"],
        "test_balanced": test["balanced_accuracy"],
        "test_per_class": test["per_class_recall"],
        "train_wall_s": int(wall.read_text()) if wall.is_file() else None,
    }
    cached.write_text(json.dumps(row, indent=2))
    return row


def run(exp: Experiment, table: dict[str, Experiment]) -> None:
    if not trained(exp):
        train(exp, table)


def report(group: str, table: dict[str, Experiment], subset: Path) -> None:
    rows = [r for e in table.values() if e.group == group if (r := measure(e, subset))]
    result = {"benchmark": "experiments", "group": group, "machine": machine(), "rows": rows}
    lines = [
        "| run | what | real val | real test | best epoch | artefact | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['what']} | {r['val_accuracy']:.4f} | {r['test_accuracy']:.4f} | "
            f"{r['best_epoch']} | {r['model']} | {r['train_wall_s'] or ''} |"
        )
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / f"experiments_{group}.json").write_text(json.dumps(result, indent=2))
    (OUT_DIR / f"experiments_{group}.md").write_text("\n".join(lines) + "\n")
    print(f"# {result['machine']}; real subset {subset}, 12-class")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("list", "run", "report"):
        p = sub.add_parser(name)
        p.add_argument("--group", default=None)
        if name == "run":
            p.add_argument("names", nargs="*")
    args = parser.parse_args()
    table = load_table()
    chosen = [e for e in table.values() if args.group in (None, e.group)]
    if args.cmd == "list":
        for e in chosen:
            state = "trained" if trained(e) else "to run"
            print(f"{e.name:22s} [{e.group}] {e.what} ({state}; {e.out.relative_to(ROOT)})")
        return
    subset = require_subset()
    if args.cmd == "run":
        if args.names:
            unknown = sorted(set(args.names) - set(table))
            if unknown:
                raise SystemExit(f"no such experiments: {unknown} (see `list`)")
            chosen = [table[n] for n in args.names]
        elif args.group is None:
            raise SystemExit("name the experiments to run, or --group")
        for exp in chosen:
            run(exp, table)
    for group in dict.fromkeys(e.group for e in chosen):
        report(group, table, subset)


if __name__ == "__main__":
    main()
