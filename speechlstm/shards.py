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
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .outputs import CSV_FIELDS, ENCODING, OutputError, first_line, is_ours

RECEIPT_SUFFIX = ".shard.json"


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
        if not 1 <= count <= 1_000_000 or not 0 <= index < count:
            raise ShardError(f"--shard {text!r}: K must be in 0..N-1 and N in 1..1000000")
        return cls(index, count)

    def owns(self, path: str) -> bool:
        return shard_of(path, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(path: str, count: int) -> int:
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def receipt_path(output: Path) -> Path:
    return output.with_name(output.name + RECEIPT_SUFFIX)


def write_receipt(output: Path, shard: Shard, rows: int, fmt: str) -> None:
    """Mark `output` as the finished run of `shard` with `rows` rows."""
    receipt = {"shard": shard.index, "count": shard.count, "rows": rows, "format": fmt}
    tmp = receipt_path(output).with_suffix(".tmp")
    tmp.write_text(json.dumps(receipt) + "\n")
    tmp.replace(receipt_path(output))


def clear_receipt(output: Path) -> None:
    """A shard run that starts or resumes is not finished until it says so."""
    receipt_path(output).unlink(missing_ok=True)


def read_rows(path: Path, fmt: str) -> tuple[list[str], list[str]]:
    """(header lines, row lines) of a results file, text as written."""
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    lines = text.splitlines(keepends=True)
    if fmt == "csv":
        return lines[:1], lines[1:]
    return [], [line for line in lines if line.strip()]


def row_path(line: str, fmt: str) -> str:
    if fmt == "csv":
        return next(csv.reader(io.StringIO(line)))[0]
    return json.loads(line)["path"]


def merge(parts: list[Path], output: Path) -> tuple[int, int]:
    """Join finished shard outputs into `output`; returns (rows, shards)."""
    if not parts:
        raise ShardError("--merge needs the part files")
    receipts = {}
    for part in parts:
        if part in receipts:
            raise ShardError(f"{part}: given twice")
        if not part.is_file():
            raise ShardError(f"{part}: no such part file")
        try:
            receipts[part] = json.loads(receipt_path(part).read_text())
        except (OSError, ValueError):
            raise ShardError(
                f"{part}: its shard run did not finish (no {receipt_path(part).name}); "
                "run it again with --resume"
            ) from None
    counts = {r["count"] for r in receipts.values()}
    formats = {r["format"] for r in receipts.values()}
    if len(counts) != 1 or len(formats) != 1:
        raise ShardError("the parts come from different --shard counts or --format")
    count, fmt = counts.pop(), formats.pop()
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
    if output.resolve() in {p.resolve() for p in parts}:
        raise ShardError(f"{output}: is one of the parts; choose another --out")
    if (
        output.is_file()
        and output.stat().st_size
        and not is_ours(first_line(output), CSV_FIELDS, ("path", "label", "top"))
    ):
        raise OutputError(f"{output}: exists and is not a speechlstm results file; refusing it")
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
            path = row_path(line, fmt)
            if shard_of(path, count) != index:
                raise ShardError(f"{part}: {path} belongs to shard {shard_of(path, count)}")
            if path in seen:
                raise ShardError(f"{path} is in shard {seen[path]} and shard {index}")
            seen[path] = index
            rows.append(line if line.endswith("\n") else line + "\n")
    try:
        tmp = output.with_name(f".{output.name}.merge.tmp")
        with tmp.open("w", newline="", **ENCODING) as fh:
            fh.writelines((header or []) + rows)
        tmp.replace(output)
    except OSError as exc:
        raise OutputError(f"{output}: cannot write ({exc.strerror or exc})") from None
    return len(rows), count
