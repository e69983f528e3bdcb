"""The clip-linking helpers every build and bench uses (speechlstm/data/links.py)."""

from __future__ import annotations

import pytest

from speechlstm.data.links import link_clip, link_folder


def test_links_point_at_the_clips_replace_links_and_never_overwrite_audio(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("b.wav", "a.wav", "notes.txt"):
        (src / name).write_bytes(name.encode())
    assert link_folder(src, tmp_path / "out" / "yes") == 2
    made = sorted(p.name for p in (tmp_path / "out" / "yes").iterdir())
    assert made == ["a.wav", "b.wav"]
    assert (tmp_path / "out/yes/a.wav").read_bytes() == b"a.wav"
    assert (tmp_path / "out/yes/a.wav").is_symlink()
    # A link is replaced; a real file is not.
    link_clip(src / "b.wav", tmp_path / "out/yes/a.wav")
    assert (tmp_path / "out/yes/a.wav").read_bytes() == b"b.wav"
    (tmp_path / "out/yes/real.wav").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="not a link"):
        link_clip(src / "a.wav", tmp_path / "out/yes/real.wav")
    assert (tmp_path / "out/yes/real.wav").read_bytes() == b"mine"
