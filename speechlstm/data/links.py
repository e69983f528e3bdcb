"""Clips linked into dataset folders: the one way every build and bench does it.

A dataset folder built from others (the default model's real clips, the
vocabulary's non-command words as `_unknown_`, the encoder's mix, the
custom-words takes) holds symbolic links to the clips, never copies: the
Speech Commands audio stays where it is, and the folder costs nothing.
"""

from __future__ import annotations

import os
from pathlib import Path


def link_clip(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """`target` made a link to `source` (absolute), creating its folder. A link
    already there is replaced; a file that is not a link is refused (never
    overwrite audio)."""
    source, target = Path(source).resolve(), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        target.unlink()
    elif target.exists():
        raise FileExistsError(f"{target}: exists and is not a link; refusing to replace it")
    target.symlink_to(source, target_is_directory=source.is_dir())
    return target


def link_folder(folder: str | os.PathLike, target: str | os.PathLike, pattern: str = "*.wav"):
    """Every file of `folder` matching `pattern` linked into `target` (sorted); the count."""
    count = 0
    for clip in sorted(Path(folder).glob(pattern)):
        link_clip(clip, Path(target) / clip.name)
        count += 1
    return count
