"""Sharded scoring: shards partition the inputs, stably; merge joins finished parts only."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from speechlstm.cli.main import app
from speechlstm.shards import Shard, ShardError, shard_of
from speechlstm.testing.synth_audio import tone_word


def _score(*args: str):
    return CliRunner().invoke(app, ["score", *args, "--no-progress"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    words = ("yes", "no", "up", "down")
    for i in range(40):
        sf.write(folder / f"c{i:02d}.wav", tone_word(words[i % 4], 0.8 + 0.01 * i), 16000)
    (folder / "broken.wav").write_bytes(b"RIFF....")
    return folder


def _rows(path):
    lines = path.read_text().splitlines()
    if path.suffix == ".csv":
        return lines[0], sorted(lines[1:])
    return None, sorted(lines)


def test_shards_partition_the_inputs_stably():
    paths = [f"/data/{i}/clip{i * 7}.wav" for i in range(5000)]
    owners = [[Shard(k, 8).owns(p) for k in range(8)] for p in paths]
    assert all(sum(o) == 1 for o in owners)  # every path in exactly one shard
    sizes = np.bincount([shard_of(p, 8) for p in paths], minlength=8)
    assert sizes.min() > 5000 / 8 * 0.85  # and evenly
    extended = paths[::-1] + [f"/new/{i}.wav" for i in range(100)]
    assert all(shard_of(p, 8) == shard_of(q, 8) for p, q in zip(paths[::-1], extended))
    for text in ("8/8", "-1/4", "1/0", "a/b", "3"):
        with pytest.raises(ShardError):
            Shard.parse(text)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_merged_shards_equal_an_unsharded_run(corpus, onnx_model, tmp_path, fmt):
    whole = tmp_path / f"whole.{fmt}"
    assert _score(str(corpus), "-m", str(onnx_model), "-o", str(whole), "-f", fmt).exit_code == 1
    parts = []
    for k in range(3):
        part = tmp_path / f"part-{k}.{fmt}"
        result = _score(str(corpus), "-m", str(onnx_model), "--shard", f"{k}/3", "-o", str(part),
                        "-f", fmt)  # fmt: skip
        assert result.exit_code in (0, 1), result.output
        parts.append(str(part))
    merged = tmp_path / f"all.{fmt}"
    result = _score("--merge", *parts, "-o", str(merged), "-f", fmt)
    assert result.exit_code == 0, result.output
    assert _rows(merged) == _rows(whole)


def test_merge_refuses_missing_unfinished_and_overlapping_parts(corpus, onnx_model, tmp_path):
    parts = []
    for k in range(3):
        part = tmp_path / f"part-{k}.csv"
        _score(str(corpus), "-m", str(onnx_model), "--shard", f"{k}/3", "-o", str(part))
        parts.append(part)
    out = tmp_path / "all.csv"

    def merge(*files):
        return _score("--merge", *map(str, files), "-o", str(out))

    result = merge(parts[0], parts[2])
    assert result.exit_code == 2 and "missing shard(s) 1/3" in result.output
    result = merge(parts[0], parts[1], parts[2], parts[1])
    assert result.exit_code == 2 and "given twice" in result.output
    copy = tmp_path / "copy.csv"
    copy.write_bytes(parts[1].read_bytes())
    copy.with_name("copy.csv.shard.json").write_bytes(
        parts[1].with_name(parts[1].name + ".shard.json").read_bytes()
    )
    result = merge(parts[0], parts[1], parts[2], copy)
    assert result.exit_code == 2 and "both shard 1/3" in result.output
    # An interrupted shard (no receipt) and a part edited after its run.
    receipt = parts[1].with_name(parts[1].name + ".shard.json")
    saved = receipt.read_text()
    receipt.unlink()
    result = merge(*parts)
    assert result.exit_code == 2 and "did not finish" in result.output
    receipt.write_text(saved)
    extra = parts[2].read_text().splitlines()[1]
    with parts[1].open("a") as fh:
        fh.write(extra + "\n")
    result = merge(*parts)
    assert result.exit_code == 2 and "rows" in result.output
    assert not out.exists()
    # A shard count that differs, and --shard without --out.
    odd = tmp_path / "odd.csv"
    _score(str(corpus), "-m", str(onnx_model), "--shard", "0/2", "-o", str(odd))
    assert merge(parts[0], odd).exit_code == 2
    assert _score(str(corpus), "-m", str(onnx_model), "--shard", "0/2").exit_code == 2
