"""Sharded scoring: N machines split a corpus deterministically; the parts merge back.

A path belongs to shard `blake2b(path) mod N`: the choice depends on the
path alone, so it holds when the input list is reordered or extended (a
Slurm array or Kubernetes indexed job can hand every task the same inputs).
Shards are numbered 0..N-1, as SLURM_ARRAY_TASK_ID and JOB_COMPLETION_INDEX
usually are.

A finished shard run writes a receipt beside its output (`OUT.shard.json`:
shard, count, rows, format). `merge` joins the parts only when every shard
0..N-1 is present once and finished, each part's rows belong to its shard,
and no file appears twice; otherwise it names what is missing or doubled.

Every results file written with `--out` also has a model record
(`OUT.model.json`: the model's path and sha256), written when the run starts:
`score --resume` refuses to append another model's rows to it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .files import (
    FileRefused,
    check_regular,
    open_regular,
    read_capped,
    rows_are_ours,
    write_atomic,
)
from .outputs import CSV_FIELDS, OutputError, csv_value, held_unless_busy

RECEIPT_SUFFIX = ".shard.json"
MODEL_SUFFIX = ".model.json"  # beside every results file: the model that wrote its rows
MAX_SHARDS = 1_000_000
MAX_RECEIPT_BYTES = 4096


class ShardError(ValueError):
    """Shards that do not add up; the message says which and why."""


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match:
            raise ShardError(f"--shard {text!r}: expected K/N, e.g. 0/8 (K from 0 to N-1)")
        index, count = int(match.group(1)), int(match.group(2))
        if not 1 <= count <= MAX_SHARDS or not 0 <= index < count:
            raise ShardError(f"--shard {text!r}: K must be in 0..N-1 and N in 1..1000000")
        return cls(index, count)

    def owns(self, path: str) -> bool:
        return shard_of(path, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(path: str, count: int) -> int:
    # The normal form (`./a/x.wav` is `a/x.wav`): one file, one shard, however spelt.
    path = os.path.normpath(path)
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def receipt_path(output: Path) -> Path:
    return output.with_name(output.name + RECEIPT_SUFFIX)


def write_receipt(
    output: Path, shard: Shard, rows: int, fmt: str, model: dict | None = None
) -> None:
    """Mark `output` as the finished run of `shard` with `rows` rows, scored by
    `model` ({"name", "sha256"}: `--merge` refuses parts of different models)."""
    receipt = {"shard": shard.index, "count": shard.count, "rows": rows, "format": fmt}
    if model is not None:
        receipt["model"] = model
    write_atomic(receipt_path(output), json.dumps(receipt) + "\n")


def read_receipt(part: Path) -> dict:
    """A part's receipt, checked field by field: it is read from disk, so it may be
    stale, edited or planted. ShardError names the part and what is wrong."""
    path = receipt_path(part)
    try:
        receipt = json.loads(read_capped(path, MAX_RECEIPT_BYTES, "shard receipt"))
    except FileRefused as exc:
        if not path.exists():
            raise ShardError(
                f"{part}: its shard run did not finish (no {path.name}); run it again with --resume"
            ) from None
        raise ShardError(str(exc)) from None
    except (ValueError, RecursionError):
        raise ShardError(f"{path}: not a shard receipt (not JSON)") from None
    if not isinstance(receipt, dict):
        raise ShardError(f"{path}: not a shard receipt (not a JSON object)")

    def integer(key: str, low: int, high: int) -> int:
        value = receipt.get(key)
        if type(value) is not int or not low <= value <= high:
            raise ShardError(f"{path}: {key}={value!r} is not an integer in {low}..{high}")
        return value

    count = integer("count", 1, MAX_SHARDS)
    out = {
        "count": count,
        "shard": integer("shard", 0, count - 1),
        "rows": integer("rows", 0, 10**12),
        "format": receipt.get("format"),
    }
    if out["format"] not in ("csv", "jsonl"):
        raise ShardError(f"{path}: format={out['format']!r} is not csv or jsonl")
    model = receipt.get("model")
    if model is not None:
        digest, name = (
            (model.get("sha256"), model.get("name")) if isinstance(model, dict) else (0, 0)
        )
        if not (isinstance(digest, str) and len(digest) == 64 and isinstance(name, str)):
            raise ShardError(f"{path}: model={model!r} is not a model's name and sha256")
        out["model"] = {"name": name[:300], "sha256": digest}
    return out


def model_record_path(output: Path) -> Path:
    return output.with_name(output.name + MODEL_SUFFIX)


def recorded_model(output: Path) -> dict | None:
    """The model ({"name", "sha256"}) that wrote `output`'s rows: from its model
    record (written when a run starts, so an interrupted run has one), else from
    a finished shard's receipt; None when neither exists (results written before
    models were recorded). ShardError names a record that is not ours."""
    path = model_record_path(output)
    if not path.exists() and not path.is_symlink():
        if receipt_path(output).exists():
            return read_receipt(output).get("model")
        return None
    try:
        record = json.loads(read_capped(path, MAX_RECEIPT_BYTES, "model record"))
    except FileRefused as exc:
        raise ShardError(str(exc)) from None
    except (ValueError, RecursionError):
        raise ShardError(f"{path}: not a speechlstm model record (not JSON)") from None
    model = record.get("model") if isinstance(record, dict) else None
    if not (
        isinstance(model, dict)
        and isinstance(model.get("sha256"), str)
        and len(model["sha256"]) == 64
        and isinstance(model.get("name"), str)
    ):
        raise ShardError(f"{path}: not a speechlstm model record (no model name and sha256)")
    return {"name": model["name"][:300], "sha256": model["sha256"]}


def check_same_model(output: Path, model: dict) -> None:
    """Before `--resume` appends to `output`: its rows must come from `model`
    (same sha256), or the file would mix two models' answers. ShardError names both."""
    try:
        has_rows = output.is_file() and output.stat().st_size > 0
    except OSError:
        has_rows = False
    if not has_rows:
        return
    before = recorded_model(output)
    if before is not None and before["sha256"] != model["sha256"]:
        raise ShardError(
            f"{output} holds results of {before['name']} (sha256 {before['sha256'][:12]}); "
            f"--resume with {model['name']} (sha256 {model['sha256'][:12]}) would mix two "
            "models' answers: resume with the same model, or write to another --out"
        )


def check_model_record(output: Path) -> None:
    """ShardError unless the file at `output`'s model record name is absent or ours."""
    path = model_record_path(output)
    if path.exists() or path.is_symlink():
        recorded_model(output)


def write_model_record(output: Path, model: dict) -> None:
    """Record the model that writes `output`'s rows (replacing only a record of ours)."""
    path = model_record_path(output)
    check_model_record(output)
    record = {"results": output.name, "model": model}
    try:
        write_atomic(path, json.dumps(record) + "\n")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None


def clear_receipt(output: Path) -> None:
    """A shard run that starts or resumes is not finished until it says so."""
    receipt_path(output).unlink(missing_ok=True)


def read_rows(path: Path, fmt: str) -> tuple[list[str], list[str]]:
    """(header lines, row lines) of a results file, text as written. Rows end at
    "\n" alone: a file name may hold a form feed, U+0085 or U+2028, which
    str.splitlines would take for line ends and cut the row in two."""
    with open_regular(path, "part file") as fh:
        text = fh.read().decode("utf-8", "surrogateescape")
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    lines = [line for line in lines if line]
    if fmt == "csv":
        return lines[:1], lines[1:]
    return [], [line for line in lines if line.strip()]


def row_path(line: str, fmt: str) -> str:
    if fmt == "csv":
        return csv_value(next(csv.reader(io.StringIO(line)))[0])
    return json.loads(line)["path"]


def merge(parts: list[Path], output: Path) -> tuple[int, int]:
    """Join finished shard outputs into `output`; returns (rows, shards)."""
    receipts = _read_receipts(parts)
    count, fmt = _common_run(receipts)
    by_index = _parts_by_shard(receipts, count)
    _check_merge_output(output, parts)
    model = next(iter(receipts.values())).get("model")
    if model is not None:
        check_model_record(output)  # before the merged file is written
    header, rows = _merged_rows(by_index, receipts, count, fmt)
    with held_unless_busy(output):
        try:
            # An unpredictable temporary name, created exclusively: a link planted
            # at a guessable name is never followed.
            text = "".join((header or []) + rows)
            write_atomic(output, text.encode("utf-8", "surrogateescape"))
        except OSError as exc:
            raise OutputError(f"{output}: cannot write ({exc.strerror or exc})") from None
    if model is not None:  # a later --resume into the merged file is checked too
        write_model_record(output, model)
    return len(rows), count


def _read_receipts(parts: list[Path]) -> dict[Path, dict]:
    """Each part file's receipt; each part given once, present and a regular file."""
    if not parts:
        raise ShardError("--merge needs the part files")
    receipts = {}
    for part in parts:
        if part in receipts:
            raise ShardError(f"{part}: given twice")
        if not part.exists():
            raise ShardError(f"{part}: no such part file")
        try:
            check_regular(part, "part file")
        except FileRefused as exc:
            raise ShardError(str(exc)) from None
        receipts[part] = read_receipt(part)
    return receipts


def _common_run(receipts: dict[Path, dict]) -> tuple[int, str]:
    """The shard count and format every part shares; the parts must also have
    been scored by one model."""
    counts = {r["count"] for r in receipts.values()}
    formats = {r["format"] for r in receipts.values()}
    if len(counts) != 1 or len(formats) != 1:
        raise ShardError("the parts come from different --shard counts or --format")
    models = {(r.get("model") or {}).get("sha256"): p for p, r in receipts.items()}
    if len(models) > 1:
        (_, pa), (_, pb) = list(models.items())[:2]
        name = {
            p: (receipts[p].get("model") or {}).get("name", "an unrecorded model") for p in (pa, pb)
        }
        raise ShardError(
            f"{pa} was scored by {name[pa]} and {pb} by {name[pb]}: results of different "
            "models cannot be merged"
        )
    return counts.pop(), formats.pop()


def _parts_by_shard(receipts: dict[Path, dict], count: int) -> dict[int, Path]:
    """The part of each shard 0..count-1: none doubled, none missing."""
    by_index: dict[int, Path] = {}
    for part, receipt in receipts.items():
        if receipt["shard"] in by_index:
            raise ShardError(
                f"{part} and {by_index[receipt['shard']]} are both shard {receipt['shard']}/{count}"
            )
        by_index[receipt["shard"]] = part
    missing = sorted(set(range(count)) - set(by_index))
    if missing:
        shown = ", ".join(f"{k}/{count}" for k in missing[:10])
        raise ShardError(f"missing shard(s) {shown}{' ...' if len(missing) > 10 else ''}")
    return by_index


def _check_merge_output(output: Path, parts: list[Path]) -> None:
    """`output` may be written: not a part, and absent, empty or a results file."""
    if output.resolve() in {p.resolve() for p in parts}:
        raise ShardError(f"{output}: is one of the parts; choose another --out")
    if output.exists() and not output.is_file():
        raise OutputError(f"{output}: is not a regular file; give a file name for --out")
    if output.is_file() and not rows_are_ours(output, CSV_FIELDS, ("path", "label", "top")):
        raise OutputError(f"{output}: exists and is not a speechlstm results file; refusing it")


def _merged_rows(
    by_index: dict[int, Path], receipts: dict[Path, dict], count: int, fmt: str
) -> tuple[list[str] | None, list[str]]:
    """The first part's header and every part's rows in shard order, each row
    checked: as many as its receipt says, in its own shard, in no other part."""
    seen: dict[str, int] = {}
    header, rows = None, []
    for index in range(count):
        part = by_index[index]
        head, lines = read_rows(part, fmt)
        header = header or head
        if len(lines) != receipts[part]["rows"]:
            raise ShardError(
                f"{part}: holds {len(lines)} rows, its run wrote {receipts[part]['rows']}"
            )
        for line in lines:
            try:
                path = row_path(line, fmt)
            except (ValueError, KeyError, TypeError, IndexError, StopIteration, csv.Error):
                raise ShardError(f"{part}: a row does not read as {fmt}: {line[:80]!r}") from None
            if shard_of(path, count) != index:
                raise ShardError(f"{part}: {path} belongs to shard {shard_of(path, count)}")
            if path in seen:
                raise ShardError(f"{path} is in shard {seen[path]} and shard {index}")
            seen[path] = index
            rows.append(line if line.endswith("\n") else line + "\n")
    return header, rows
