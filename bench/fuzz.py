"""Fuzz harness: hundreds of corrupt audio files and models against the CLI contract.

Audio: valid recordings (16-bit and float WAV, FLAC, OGG, stereo 44.1 kHz)
mutated at random (truncated, bytes flipped, header fields overwritten with
lies, ranges zeroed, garbage prepended, pure junk), scored in one `score` run
and transcribed in one `transcribe --json` run. Models: the tiny test model
with its description mutated field by field (labels, features, model,
detector, format), its graph's signature mutated (input/output type, rank,
declared sizes, an extra input) and byte-corrupted files, each run through
`info` and `transcribe`. Names: FIFOs, devices, NUL bytes, line separators
and terminal escapes in one list file, scored, then sharded and merged.
Outputs: every writer (`score -o`, `--merge -o`, `evaluate -r`, `tune-detector
--write/--plot`) over a dangling link, a link to a user file, a user's file
or PNG, a results file another `score` holds, a FIFO and a folder.
Families: detector files naming another model's labels, flags that do not
apply, labels and model sizes past the limits, results of two models mixed,
and 40 embedding-model files with settings, labels and tensors mutated.

An input is held when its command did what the contract says: no traceback
and no last-resort "unexpected" error; exit 0, 1 (some inputs failed) or 2
(unusable model); score writes exactly one row per file, each with a label or
an error; a model that loads yields labels that are printable text.

    python bench/fuzz.py [--files 400] [--models 150] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import OUT_DIR, machine  # noqa: E402


@dataclass
class Tally:
    tried: int = 0
    held: int = 0
    broken: list[str] = field(default_factory=list)

    def check(self, name: str, ok: bool, why: str = "") -> None:
        self.tried += 1
        self.held += ok
        if not ok:
            self.broken.append(f"{name}: {why}"[:300])


# -- audio ---------------------------------------------------------------------
def seed_files(folder: Path) -> list[bytes]:
    """Valid recordings in the formats users have, as bytes."""
    from speechlstm.testing.synth_audio import tone_word

    word = tone_word("yes")
    stereo = np.stack([word, word * 0.5], axis=1)
    seeds = []
    for name, data, rate, kw in (
        ("a.wav", word, 16000, {"subtype": "PCM_16"}),
        ("b.wav", word, 16000, {"subtype": "FLOAT"}),
        ("c.flac", word, 16000, {}),
        ("d.ogg", word, 16000, {}),
        ("e.wav", np.tile(stereo, (3, 1)), 44100, {"subtype": "PCM_24"}),
    ):
        path = folder / name
        sf.write(path, data, rate, **kw)
        seeds.append((path.suffix, path.read_bytes()))
        path.unlink()
    return seeds


def mutate(blob: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    b = bytearray(blob)
    kind = rng.choice(["truncate", "flip", "header", "zero", "prepend", "junk", "tiny"])
    if kind == "truncate":
        b = b[: int(rng.integers(0, len(b)))]
    elif kind == "flip":
        for _ in range(int(rng.integers(1, 50))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
    elif kind == "header":  # a lie in a 16/32-bit field of the first 64 bytes
        at = int(rng.integers(4, 60))
        value = int(
            rng.choice([0, 1, 2, 7, 65535, 2**31 - 1, 2**32 - 1, int(rng.integers(0, 2**32))])
        )
        b[at : at + 4] = struct.pack("<I", value)
    elif kind == "zero":
        start = int(rng.integers(0, len(b)))
        b[start : start + int(rng.integers(1, 4096))] = bytes(
            len(b[start : start + int(rng.integers(1, 4096))])
        )
    elif kind == "prepend":
        b = bytearray(rng.bytes(int(rng.integers(1, 64)))) + b
    elif kind == "junk":
        b = bytearray(rng.bytes(int(rng.integers(0, 20000))))
    else:
        b = b[:44] + b[44 : 44 + int(rng.integers(0, 8))]
    return str(kind), bytes(b)


def run_cli(args: list[str]) -> tuple[int, str, str, BaseException | None]:
    """The command in this process (as `speechlstm ARGS`): code, stdout, stderr, exception."""
    from typer.testing import CliRunner

    from speechlstm.cli.main import app

    result = CliRunner().invoke(app, args)
    exc = result.exception if not isinstance(result.exception, SystemExit) else None
    return result.exit_code, result.stdout, result.stderr, exc


def fuzz_audio(folder: Path, n: int, rng: np.random.Generator, model: Path) -> Tally:
    tally = Tally()
    seeds = seed_files(folder)
    audio = folder / "audio"
    audio.mkdir()
    kinds = {}
    for i in range(n):
        suffix, blob = seeds[i % len(seeds)]
        kind, data = mutate(blob, rng)
        path = audio / f"f{i:04d}{suffix}"
        path.write_bytes(data)
        kinds[str(path)] = kind
    out = folder / "scores.csv"
    code, _, err, exc = run_cli(
        ["score", str(audio), "-m", str(model), "-o", str(out), "--no-progress"]
    )
    rows = {}
    if out.is_file():
        rows = {r["path"]: r for r in csv.DictReader(io.StringIO(out.read_text()))}
    for path, kind in kinds.items():
        row = rows.get(path)
        ok = (
            exc is None
            and code in (0, 1)
            and row is not None
            and bool(row["label"] or row["error"])
        )
        tally.check(
            f"score {kind} {Path(path).name}", ok, repr(exc) if exc else f"exit {code}, row {row}"
        )
    # transcribe --json on a third of them: one JSON line per file
    subset = sorted(kinds)[: max(1, n // 3)]
    code, stdout, err, exc = run_cli(["transcribe", *subset, "-m", str(model), "--json"])
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    seen = {r.get("path") for r in lines}
    for path in subset:
        ok = exc is None and code in (0, 1) and path in seen
        tally.check(
            f"transcribe {kinds[path]} {Path(path).name}", ok, repr(exc) if exc else f"exit {code}"
        )
    return tally


# -- models --------------------------------------------------------------------
VALUES = [None, True, 0, -1, 1, 2.5, float("nan"), float("inf"), 10**12, "", "x", "\x07bell",
          [], ["a"], {}, {"a": 1}, [1, 2], "16000"]  # fmt: skip
FIELDS = {
    "speechlstm.features": ["sample_rate", "clip_ms", "n_mfcc", "n_mels", "window_ms", "hop_ms",
                            "n_fft", "f_min_hz", "f_max_hz", "mel_scale", "log_floor", "normalize"],
    "speechlstm.model": ["cell", "hidden_size", "num_layers", "dropout", "pooling", "frame_stack",
                         "n_params"],
    "speechlstm.detector": ["hop_ms", "smoothing_ms", "threshold", "thresholds", "refractory_ms",
                            "peak_wait_ms", "gate", "gate_dbfs"],
    "speechlstm.training": ["source", "clips", "epochs_completed", "test_accuracy", "train"],
}  # fmt: skip
LABEL_LIES = [[], "yes", ["yes"], ["a", "a", "b", "c", "d"], ["\x00", "b", "c", "d", "e"],
              ["", "b", "c", "d", "e"], [1, 2, 3, 4, 5], ["a\nb", "b", "c", "d", "e"],
              ["x"] * 1000, None]  # fmt: skip


def mutate_model(src: Path, dst: Path, rng: np.random.Generator) -> str:
    import onnx

    blob = src.read_bytes()
    if rng.random() < 0.25:  # bytes
        b = bytearray(blob)
        if rng.random() < 0.5:
            b = b[: int(rng.integers(0, len(b)))]
            what = "truncated"
        else:
            for _ in range(int(rng.integers(1, 30))):
                b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
            what = "bytes flipped"
        dst.write_bytes(bytes(b))
        return what
    model = onnx.load_from_string(blob)
    if rng.random() < 0.2:  # the graph's signature, not its description
        what = mutate_signature(model, rng)
        onnx.save(model, dst)
        return what
    props = {p.key: p.value for p in model.metadata_props}
    roll = rng.random()
    if roll < 0.25:
        lie = LABEL_LIES[int(rng.integers(0, len(LABEL_LIES)))]
        props["speechlstm.labels"] = json.dumps(lie)
        what = f"labels {str(lie)[:30]}"
    elif roll < 0.35:
        key = str(rng.choice(list(props)))
        if rng.random() < 0.5:
            del props[key]
            what = f"{key} removed"
        else:
            props[key] = rng.bytes(8).hex()[: int(rng.integers(0, 16))]
            what = f"{key} not JSON"
    else:
        key = str(rng.choice(list(FIELDS)))
        name = str(rng.choice(FIELDS[key]))
        value = VALUES[int(rng.integers(0, len(VALUES)))]
        section = json.loads(props.get(key, "{}"))
        section[name] = value
        props[key] = json.dumps(section)
        what = f"{key}.{name}={value!r}"[:60]
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, dst)
    return what


def mutate_signature(model, rng: np.random.Generator) -> str:
    """An input or output of another type, rank or size, or an extra input."""
    from onnx import TensorProto, helper

    graph = model.graph
    arg = graph.input[0] if rng.random() < 0.5 else graph.output[0]
    shape = arg.type.tensor_type.shape
    roll = int(rng.integers(0, 5))
    if roll == 0:
        kind = [TensorProto.INT16, TensorProto.DOUBLE, TensorProto.INT64][int(rng.integers(0, 3))]
        arg.type.tensor_type.elem_type = kind
        return f"{arg.name} dtype {kind}"
    if roll == 1:
        shape.dim.add().dim_value = 1
        return f"{arg.name} rank {len(shape.dim)}"
    if roll == 2 and len(shape.dim) > 1:
        del shape.dim[-1]
        return f"{arg.name} rank {len(shape.dim)}"
    if roll == 3 and len(shape.dim):
        size = int([10**9, 7, 0, 2**31 - 1][int(rng.integers(0, 4))])
        shape.dim[int(rng.integers(0, len(shape.dim)))].dim_value = size
        return f"{arg.name} declared size {size}"
    graph.input.append(helper.make_tensor_value_info("state", TensorProto.FLOAT, [1, 4]))
    return "extra input"


def fuzz_names(folder: Path, model: Path) -> Tally:
    """Special files, NUL bytes, line separators and escapes in one list file;
    then the same corpus sharded, merged and compared with one run."""
    from speechlstm.testing.synth_audio import tone_word

    tally = Tally()
    corpus = folder / "names"
    corpus.mkdir()
    odd = ["form\x0cfeed.wav", "next\x85line.wav", "line\u2028sep.wav", "esc\x1b[2J.wav", "ok.wav"]
    for name in odd:
        sf.write(corpus / name, tone_word("up"), 16000)
    os.mkfifo(corpus / "pipe.wav")
    entries = [*odd, "pipe.wav", "/dev/zero", "/dev/urandom", "nul\x00name.wav", "missing.wav"]
    listing = corpus / "list.txt"
    listing.write_text("\n".join(entries) + "\n", encoding="utf-8")
    out = folder / "names.csv"
    code, _, err, exc = run_cli(["score", str(listing), "-m", str(model), "-o", str(out)])
    rows = {}
    if out.is_file():
        with out.open(newline="", encoding="utf-8") as fh:
            rows = {r["path"]: r for r in csv.DictReader(fh)}
    for entry in entries:
        path = entry if entry.startswith("/") else str(corpus / entry)
        row = rows.get(path)
        ok = exc is None and code == 1 and row is not None and bool(row["label"] or row["error"])
        tally.check(f"score name {entry!r}", ok, repr(exc) if exc else f"exit {code}, row {row}")
    parts = []
    for k in range(3):
        part = folder / f"names-{k}.csv"
        run_cli(["score", str(listing), "-m", str(model), "--shard", f"{k}/3", "-o", str(part)])
        parts.append(str(part))
    merged = folder / "names-merged.csv"
    code, _, err, exc = run_cli(["score", "--merge", *parts, "-o", str(merged)])
    same = (
        merged.is_file()
        and out.is_file()
        and sorted(merged.read_text(encoding="utf-8").split("\n"))
        == sorted(out.read_text(encoding="utf-8").split("\n"))
    )
    tally.check("merge of odd names equals one run", exc is None and code == 0 and same, err)
    return tally


def fuzz_models(folder: Path, n: int, rng: np.random.Generator, model: Path, clip: Path) -> Tally:
    tally = Tally()
    models = folder / "models"
    models.mkdir()
    for i in range(n):
        path = models / f"m{i:04d}.onnx"
        what = mutate_model(model, path, rng)
        for command in (["info", str(path)], ["transcribe", str(clip), "-m", str(path), "--json"]):
            code, stdout, err, exc = run_cli(command)
            ok = exc is None and code in (0, 2) and "unexpected" not in err
            if ok and code == 0 and command[0] == "transcribe":
                row = json.loads(stdout.splitlines()[0])
                label = row.get("label")
                ok = isinstance(label, str) and label.isprintable() and label != ""
            tally.check(
                f"{command[0]} [{what}]", ok, repr(exc) if exc else f"exit {code}: {err[-200:]}"
            )
    return tally


# -- outputs (issue 46, round 3) ----------------------------------------------
HOSTILE_OUTPUTS = ("dangling link", "link to a user file", "user file", "user PNG", "locked",
                   "FIFO", "folder")  # fmt: skip


def plant(path: Path, kind: str, folder: Path) -> bytes | None:
    """Something at `path` that no writer may harm; returns the user file's bytes."""
    import fcntl

    user = folder / f"user-{path.name}"
    png = b"\x89PNG\r\n\x1a\n" + b"a user's own picture"
    if kind == "dangling link":
        os.symlink(folder / "nowhere" / path.name, path)
    elif kind == "link to a user file":
        user.write_bytes(b"the user's notes\n")
        os.symlink(user, path)
        return user.read_bytes()
    elif kind == "user file":
        path.write_bytes(b"the user's notes, path,label,score\n")
    elif kind == "user PNG":
        path.write_bytes(png)
    elif kind == "locked":  # a results file a running `score` is writing
        path.write_text("path,label,score,top,duration_s,error\n")
        holder = open(path, "a")  # noqa: SIM115 - held until the stage ends
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        HELD.append(holder)
    elif kind == "FIFO":
        os.mkfifo(path)
    else:
        path.mkdir()
    return path.read_bytes() if path.is_file() and not path.is_symlink() else None


HELD: list = []


def untouched(path: Path, kind: str, before: bytes | None, folder: Path) -> bool:
    if kind.endswith("link"):
        linked = path.is_symlink() and not (folder / "nowhere").exists()
        return linked and (before is None or (folder / f"user-{path.name}").read_bytes() == before)
    if kind == "FIFO":
        return path.is_fifo()
    if kind == "folder":
        return path.is_dir() and not any(path.iterdir())
    return path.read_bytes() == before


def fuzz_outputs(folder: Path, model: Path) -> Tally:
    """Every writer against every hostile output: one line naming it, exit 2,
    and whatever was there unharmed (a link stays a link, a user file its bytes)."""
    from speechlstm.testing.synth_audio import make_dataset, tone_word

    tally = Tally()
    clips = folder / "out-clips"
    clips.mkdir()
    for i, word in enumerate(("yes", "no", "up", "down")):
        sf.write(clips / f"c{i}.wav", tone_word(word), 16000)
    parts = []
    for k in range(2):
        parts.append(str(folder / f"out-part-{k}.csv"))
        run_cli(["score", str(clips), "-m", str(model), "--shard", f"{k}/2", "-o", parts[-1]])
    data = make_dataset(folder / "out-ds", speakers=2, takes=1)
    missing = str(folder / "missing")
    writers = {
        "score -o": lambda out: ["score", str(clips), "-m", str(model), "-o", out],
        "score --merge -o": lambda out: ["score", "--merge", *parts, "-o", out],
        "evaluate -r (report.md)": lambda out: [
            "evaluate", str(data), "-m", str(model), "-r", str(Path(out).parent)],
        "tune-detector --write": lambda out: ["tune-detector", "-m", str(model), "--commands",
            missing, "--truth", missing, "--negatives", missing, "--write", out],
        "tune-detector --plot": lambda out: ["tune-detector", "-m", str(model), "--commands",
            missing, "--truth", missing, "--negatives", missing, "--plot", out],
    }  # fmt: skip
    for n, (writer, args) in enumerate(writers.items()):
        for kind in HOSTILE_OUTPUTS:
            if kind == "locked" and not writer.startswith("score"):
                continue  # the lock guards results files, which score writes
            place = folder / f"out-{n}-{kind.replace(' ', '_')}"
            place.mkdir()
            name = "report.md" if writer.startswith("evaluate") else f"out{n}.csv"
            path = place / ("plot.png" if writer.endswith("--plot") else name)
            before = plant(path, kind, place)
            code, _, err, exc = run_cli(args(str(path)))
            named = path.name in err or str(place) in err
            ok = exc is None and code == 2 and named and "unexpected" not in err
            ok = ok and untouched(path, kind, before, place)
            tally.check(
                f"{writer} over a {kind}", ok, repr(exc) if exc else f"{code}: {err[-200:]}"
            )
    while HELD:
        HELD.pop().close()
    return tally


# -- the other round-3 families ---------------------------------------------
def fuzz_families(folder: Path, model: Path, clip: Path, rng: np.random.Generator) -> Tally:
    """Generated hostile inputs for the families beyond files and names: detector
    files for another model (5), flags that do not apply (10), labels and sizes
    past the limits (4), results of two models mixed (3), tampered
    embedding-model files (12): one line, the documented exit code, nothing harmed."""
    from speechlstm.testing.synth_audio import make_dataset

    tally = Tally()

    def refused(name: str, args: list[str], code: int = 2, says: str = "") -> None:
        got, _, err, exc = run_cli(args)
        ok = exc is None and got == code and "unexpected" not in err and says in err
        tally.check(name, ok, repr(exc) if exc else f"exit {got}: {err[-200:]}")

    foreign = folder / "foreign.toml"
    label = "".join(chr(int(c)) for c in rng.integers(0x4E00, 0x9FFF, 4))
    foreign.write_text(f'[detector]\nthresholds = [["{label}", 0.5]]\n', encoding="utf-8")
    refused("detector file naming another model's label", ["transcribe", str(clip), "-m",
            str(model), "--detector", str(foreign)], says=label)  # fmt: skip
    refused(
        "--verifier-threshold without --verifier",
        ["transcribe", str(clip), "-m", str(model), "--verifier-threshold", "0.7"],
    )
    refused("--gate-dbfs out of range", ["transcribe", str(clip), "-m", str(model),
            "--gate-dbfs", str(float(rng.uniform(1, 90)))])  # fmt: skip
    training_side = importlib.util.find_spec("torch") is not None
    data = make_dataset(folder / "fam-ds", words=("yes", "no"), speakers=2, takes=1)
    for i, size in enumerate((10**6, int(rng.integers(4097, 10**9))) if training_side else ()):
        out = folder / f"fam-run{i}"
        refused(f"train --hidden {size}", ["train", str(data), "--hidden", str(size),
                "--out", str(out), "--no-progress"], says="hidden_size")  # fmt: skip
    bad = "x" * int(rng.integers(65, 300))
    refused(
        "data synth with a label past the limit",
        ["data", "synth", "--words", f"yes,{bad}", "--out", str(folder / "fam-synth")],
    )
    twin = folder / "twin.onnx"
    import onnx

    m = onnx.load(str(model))
    m.doc_string = "another model"
    onnx.save(m, str(twin))
    out = folder / "fam-results.csv"
    run_cli(["score", str(clip), "-m", str(model), "-o", str(out)])
    before = out.read_bytes()
    refused("score --resume with another model", ["score", str(clip), str(clip.parent),
            "-m", str(twin), "-o", str(out), "--resume"])  # fmt: skip
    tally.check("the results of the first model kept", out.read_bytes() == before)
    if training_side:  # the inference install has no torch: no embedding-model files
        fuzz_embedding_files(folder, rng, tally)
    return tally


def fuzz_embedding_files(folder: Path, rng: np.random.Generator, tally: Tally) -> None:
    """Embedding-model files with settings, labels and tensors mutated at random:
    each loads or is refused with one line naming it (never another error, never
    an allocation its numbers ask for)."""
    import torch
    from safetensors.torch import save_file

    from speechlstm.config import EmbeddingConfig
    from speechlstm.train.embedding_model.head import build_head
    from speechlstm.train.embedding_model.model_file import (
        FORMAT,  # fmt: skip
        SETTINGS_KEY,
        EmbeddingModel,
        settings_record,
    )

    for i in range(40):
        labels = ["yes", "no", "up"]
        record = settings_record(EmbeddingConfig(heads=1, copies=0), seed=0)
        tensors = dict(build_head(3, EmbeddingConfig(heads=1, copies=0)).state_dict())
        what = str(rng.choice(["units", "heads", "labels", "drop", "add", "resize", "junk"]))
        if what == "units":
            record["hidden_size"] = int(10 ** rng.uniform(0, 12))
        elif what == "heads":
            record["heads"] = int(rng.integers(-3, 40))
        elif what == "labels":
            labels = ["w"] * int(rng.integers(0, 3)) + [chr(int(rng.integers(0, 0x3000)))]
        elif what == "drop":
            tensors.pop(str(rng.choice(sorted(tensors))))
        elif what == "add":
            tensors[f"extra{i}"] = torch.zeros(int(rng.integers(1, 9)))
        elif what == "resize":
            key = str(rng.choice(sorted(tensors)))
            tensors[key] = torch.zeros(*[int(rng.integers(1, 9))] * tensors[key].ndim)
        else:
            record[f"junk{i}"] = float(rng.uniform())
        meta = {"format": FORMAT, "labels": json.dumps(labels), SETTINGS_KEY: json.dumps(record)}
        path = folder / f"emb{i:02d}.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=meta)
        try:
            EmbeddingModel(path)
            ok, why = True, ""
        except ValueError as exc:
            one = str(exc)
            ok, why = str(path) in one and "\n" not in one, one[:200]
        except BaseException as exc:  # noqa: BLE001 - any other error is the fault sought
            ok, why = False, repr(exc)[:200]
        tally.check(f"embedding-model file [{what}]", ok, why)


def run(n_files: int, n_models: int, seed: int) -> dict:
    from speechlstm.testing.synth_audio import tone_word
    from speechlstm.testing.tiny_onnx import build_tiny_model

    rng = np.random.default_rng(seed)
    folder = Path(tempfile.mkdtemp(prefix="speechlstm-fuzz-"))
    try:
        model = build_tiny_model(folder / "tiny.onnx")
        clip = folder / "yes.wav"
        sf.write(clip, tone_word("yes"), 16000)
        started = time.perf_counter()
        audio = fuzz_audio(folder, n_files, rng, model)
        models = fuzz_models(folder, n_models, rng, model, clip)
        names = fuzz_names(folder, model)
        outputs = fuzz_outputs(folder, model)
        families = fuzz_families(folder, model, clip, rng)
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "benchmark": "fuzz",
        "machine": machine(),
        "seed": seed,
        "audio": {
            "inputs": n_files,
            "checks": audio.tried,
            "held": audio.held,
            "broken": audio.broken,
        },
        "models": {
            "inputs": n_models,
            "checks": models.tried,
            "held": models.held,
            "broken": models.broken,
        },  # fmt: skip
        "names": {"checks": names.tried, "held": names.held, "broken": names.broken},
        "outputs": {"checks": outputs.tried, "held": outputs.held, "broken": outputs.broken},
        "families": {"checks": families.tried, "held": families.held, "broken": families.broken},
        "held": audio.held + models.held + names.held + outputs.held + families.held,
        "tried": audio.tried + models.tried + names.tried + outputs.tried + families.tried,
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--models", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("COLUMNS", "200")
    result = run(args.files, args.models, args.seed)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "fuzz.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    if result["held"] != result["tried"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
