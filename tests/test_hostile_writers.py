"""Round 3, family 1 (issue 46): every writer guarded. A merge never replaces a
results file a running `score` is writing; a report folder's PNGs and page are
ours only if our report.json lists them; `tune-detector --plot` keeps a PNG we
did not draw; generated noise and recorded takes never go through a link."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from speechlstm.cli.main import app
from speechlstm.outputs import OutputError, held_unless_busy
from speechlstm.testing.synth_audio import tone_word


def _merge_parts(onnx_model, tmp_path: Path) -> list[str]:
    folder = tmp_path / "clips"
    folder.mkdir()
    for i, word in enumerate(("yes", "no", "up", "down")):
        sf.write(folder / f"c{i}.wav", tone_word(word), 16000)
    parts = []
    for k in range(2):
        part = tmp_path / f"part-{k}.csv"
        args = ["score", str(folder), "-m", str(onnx_model), "--shard", f"{k}/2", "-o", str(part)]
        result = CliRunner().invoke(app, [*args, "--no-progress"])
        assert result.exit_code == 0, result.output
        parts.append(str(part))
    return parts


def test_merge_refuses_a_results_file_a_running_score_writes(onnx_model, tmp_path):
    parts = _merge_parts(onnx_model, tmp_path)
    out = tmp_path / "all.csv"
    out.write_text(Path(parts[0]).read_text())  # a results file, as a score writes it
    before = out.read_bytes()
    with open(out, "a") as held:  # what a running score holds while it writes
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = CliRunner().invoke(app, ["score", "--merge", *parts, "-o", str(out)])
        assert result.exit_code == 2, result.output
        assert "another process is writing it" in result.output and str(out) in result.output
        assert out.read_bytes() == before
    # Once the writer is gone, the same merge replaces it.
    result = CliRunner().invoke(app, ["score", "--merge", *parts, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 1 + 4


def test_merge_refuses_a_link_as_its_output(onnx_model, tmp_path):
    parts = _merge_parts(onnx_model, tmp_path)
    out = tmp_path / "all.csv"
    os.symlink(tmp_path / "elsewhere.csv", out)  # dangling
    result = CliRunner().invoke(app, ["score", "--merge", *parts, "-o", str(out)])
    assert result.exit_code == 2 and "symbolic link" in result.output
    assert out.is_symlink() and not (tmp_path / "elsewhere.csv").exists()


def test_held_unless_busy_holds_the_lock_against_a_score_starting_meanwhile(tmp_path):
    from speechlstm.outputs import open_rows

    out = tmp_path / "r.csv"
    out.write_text("path,label,score\n")
    with (
        held_unless_busy(out),
        pytest.raises(OutputError, match="another process is writing it"),
    ):
        open_rows(out, True, ("path", "label", "score"), ("path",))
    fh, _ = open_rows(out, True, ("path", "label", "score"), ("path",))
    fh.close()


def _report(folder: Path):
    from speechlstm.evaluation import write_report

    rep = {
        "clips": 4,
        "accuracy": 0.75,
        "balanced_accuracy": 0.75,
        "per_class": {"a": {"precision": 1, "recall": 0.5, "f1": 0.67, "support": 2}},
        "most_confused": [],
        "confusion_matrix": [[1, 1], [0, 2]],
        "labels": ["a", "b"],
        "expected_calibration_error": 0.1,
        "reliability": [],
        "errors": [],
        "skipped_words": [],
    }
    return write_report(rep, folder, "t")


@pytest.mark.slow
def test_report_pngs_are_ours_only_if_our_report_lists_them(tmp_path):
    from speechlstm.evaluation import check_report_dir, is_our_report_file
    from speechlstm.files import FileRefused

    folder = tmp_path / "rep"
    written = _report(folder)
    listed = json.loads((folder / "report.json").read_text())["files"]
    assert sorted(listed) == ["confusion.png", "reliability.png", "report.md"]
    assert all(is_our_report_file(p) for p in written)
    check_report_dir(folder)  # a second evaluate may replace every file
    # A user's own picture under our name: a PNG, but not the one we listed.
    user_png = (folder / "reliability.png").read_bytes() + b"user's own"
    (folder / "confusion.png").write_bytes(user_png)
    with pytest.raises(FileRefused, match="confusion.png"):
        check_report_dir(folder)
    assert (folder / "confusion.png").read_bytes() == user_png
    check_report_dir(folder, force=True)
    # No report.json vouching for them: no PNG there is ours.
    other = tmp_path / "other"
    other.mkdir()
    (other / "reliability.png").write_bytes((folder / "reliability.png").read_bytes())
    assert not is_our_report_file(other / "reliability.png")


def test_tune_detector_plot_keeps_a_png_it_did_not_draw(tmp_path):
    from speechlstm.plots import is_our_png, plot_reliability

    mine = tmp_path / "mine.png"
    plot_reliability([], mine, 0.0)
    assert is_our_png(mine)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    theirs = tmp_path / "theirs.png"
    fig.savefig(theirs)
    plt.close(fig)
    assert theirs.read_bytes().startswith(b"\x89PNG") and not is_our_png(theirs)
    before = theirs.read_bytes()
    missing = str(tmp_path / "nothing")
    args = ["tune-detector", "--commands", missing, "--truth", missing, "--negatives", missing]
    result = CliRunner().invoke(app, [*args, "--plot", str(theirs)])
    assert result.exit_code == 2 and "not a file speechlstm wrote" in result.output
    assert theirs.read_bytes() == before


def test_noise_is_not_written_through_a_link(tmp_path):
    from speechlstm.data.synth import SynthConfig, write_noise
    from speechlstm.files import FileRefused

    folder = tmp_path / "noise"
    folder.mkdir()
    target = tmp_path / "precious.wav"
    os.symlink(target, folder / "white.wav")
    with pytest.raises(FileRefused, match="white.wav"):
        write_noise(folder, SynthConfig(words=("a",), noise_seconds=0.5), {})
    assert not target.exists()
    (folder / "white.wav").unlink()
    write_noise(folder, SynthConfig(words=("a",), noise_seconds=0.5), {})
    kinds = sorted(p.stem for p in folder.glob("*.wav"))
    assert kinds == ["brown", "hum", "pink", "white"]  # no engine: no babble
    wave, rate = sf.read(folder / "pink.wav")
    assert rate == 16000 and len(wave) == 8000 and np.abs(wave).max() > 0
