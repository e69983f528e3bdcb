"""A training run, orchestrated: the run folder (lock, refusals, config.toml),
the data, the trainer, resume, and the final report (test accuracy, metrics.json,
plots). `run_training` runs the MFCC model's trainer; `run_embedding_model`
(`train --frontend embedding`) the embedding model's fit on the same data."""

from __future__ import annotations

import json
from pathlib import Path

from .. import metrics
from ..config import RunConfig
from ..config_text import SECTIONS, layered_config, save_toml
from ..files import FolderLock, check_regular, same_source
from ..progress import note
from . import checkpoint
from .distributed import SINGLE, Ranks, barrier
from .embedding_model.fit import train_embedding_model
from .embedding_model.model_file import MODEL_FILE
from .history import score_split
from .optim import pick_device
from .sources import LearningSource
from .trainer import Trainer

# What a run writes into its folder: a new run refuses to replace them (unless forced).
RUN_FILES = ("last.pt", "best.pt", "config.toml", "metrics.json", "curves.png", "confusion.png")

# The settings each kind of run reads (section -> its keys, None: all): what
# its config.toml records. The MFCC model never reads [embedding]; the
# embedding model reads the data, its copies' augmentation, the seed and its own.
MFCC_SETTINGS: dict[str, tuple[str, ...] | None] = {
    name: None for name in SECTIONS if name != "embedding"
}
EMBEDDING_SETTINGS: dict[str, tuple[str, ...] | None] = {
    "features": None,
    "augment": None,
    "train": ("seed",),
    "data": None,
    "embedding": None,
}


def final_report(trainer: Trainer) -> dict:
    """Test the best checkpoint; write metrics.json, curves.png, confusion.png.

    The checkpoints are left as the trainer wrote them: the test accuracy lives
    in metrics.json, where export finds it (checkpoint.tested_accuracy).
    """
    from ..plots import plot_confusion, plot_curves

    out = trainer.out_dir
    best_path = out / "best.pt"
    if best_path.is_file():
        trainer.eval_model.load_state_dict(checkpoint.load(best_path).weights)
    test = trainer.data.splits["test"]
    result = score_split(trainer.eval_model, test, trainer.device)
    labels = trainer.labels
    cm = metrics.confusion_matrix(test.targets, result["predictions"], len(labels))
    report = {
        "labels": labels,
        "n_params": trainer.n_params,
        "history": trainer.state.history,
        "best_epoch": trainer.state.best_epoch,
        "best_val_accuracy": trainer.state.best_val_acc,
        "test_accuracy": metrics.accuracy(cm),
        "test_balanced_accuracy": metrics.balanced_accuracy(cm),
        "test_clips": len(test.targets),
        "per_class": metrics.per_class(cm, labels),
        "confusion_matrix": cm.tolist(),
        "summary": trainer.summary(),
        "skipped_files": trainer.data.errors,
    }
    (out / checkpoint.METRICS_FILE).write_text(json.dumps(report, indent=2))
    plot_curves(trainer.state.history, out / "curves.png")
    plot_confusion(
        cm, labels, out / "confusion.png", title=f"test accuracy {report['test_accuracy']:.3f}"
    )
    return report


def prepare_run_data(source, cfg: RunConfig, noise_dir, cache_dir, show_progress, say=True):
    """The run's data as the trainer (and the embedding model) take it: the
    dataset's splits for the task, `--add` sources, silence and the noise bank;
    a one-line summary on stderr."""
    from ..data.prepare import prepare

    data = prepare(
        source,
        cfg.data,
        cfg.features,
        cfg.train.seed,
        noise_dir=noise_dir,
        cache_dir=cache_dir,
        show_progress=show_progress,
    )
    if say:
        note(
            f"{data.index.summary()}; task: {', '.join(data.task.labels)}; "
            f"clips per split: {data.counts()}; noise: {data.noise_source}"
        )
    return data


def run_training(
    source: str | Path,
    out_dir: str | Path,
    cfg: RunConfig,
    resume: bool = False,
    noise_dir: str | Path | None = None,
    cache_dir: Path | None = None,
    show_progress: bool | None = None,
    verbose: bool = False,
    ranks: Ranks = SINGLE,
    force: bool = False,
    resume_settings: dict | None = None,
    learning_sources: list[LearningSource] | None = None,
) -> dict:
    """Train on `source`, write the run folder, return the final report.

    `learning_sources` (sources.py): what the student learns from besides its
    labels; None, the shipped ones the settings switch on (bench/ passes levers
    under trial here).

    A resumed run continues with the settings saved in its checkpoint (`cfg` is
    not used); only `resume_settings` replace them, under the resume rule of
    config_text.layered_config (device, threads, patience).

    `verbose` also prints each epoch's gradient norm per layer group (always in metrics.json).
    Under torchrun (`ranks`), only rank 0 writes and reports; the others return {}.
    A new run refuses a folder holding another run's files unless `force`.
    """
    out_dir = Path(out_dir)
    # One run a folder: a second run into it is refused while this one holds it.
    lock = FolderLock(out_dir, "run folder") if ranks.main else None
    try:
        return _run_training(
            source, out_dir, cfg, resume, noise_dir, cache_dir, show_progress, verbose, ranks,
            force, resume_settings or {}, learning_sources,
        )  # fmt: skip
    finally:
        if lock is not None:
            lock.release()


def _resume(out_dir: Path, source, resume_settings: dict, ranks: Ranks):
    """A resumed run's checkpoint, settings and data source (the recorded one, or
    `source` when it is the same data by content under a new name)."""
    resume_from = checkpoint.load(out_dir / "last.pt", resumable=True)
    cfg = layered_config(resume_from.config, None, [], resume_settings, resume=True)
    moved = bool(resume_from.source) and not same_source(source, resume_from.source)
    recorded = resume_from.summary.get("data_fingerprint")
    if moved and not recorded:
        # Resume means the same run: other data would silently be ignored.
        raise ValueError(
            f"--resume: {out_dir} was trained on {resume_from.source}, not {source}; "
            f"resume with the run's data ({resume_from.source}), or train on {source} "
            "into another --out"
        )
    if moved:
        # Named anew: the same clips by content (a moved or renamed dataset)
        # goes on under the new name; other clips are refused, nothing written.
        from ..data.datasets import DatasetError, discover

        try:
            same = discover(source).fingerprint() == recorded
        except DatasetError:
            same = False
        if not same:
            raise ValueError(
                f"--resume: {out_dir} was trained on {resume_from.source}; {source} holds "
                "other clips (not the same data moved): resume with the run's data, or "
                f"train on {source} into another --out"
            )
    if ranks.main:
        at = resume_from.train_state.epoch + 1
        note(f"resuming {out_dir / 'last.pt'} at epoch {at}" + (f" on {source}" if moved else ""))
    return resume_from, cfg, source if moved else (resume_from.source or source)


def _run_training(
    source, out_dir: Path, cfg, resume, noise_dir, cache_dir, show_progress, verbose, ranks, force,
    resume_settings: dict, learning_sources,
) -> dict:  # fmt: skip
    from .encoder import resolve

    resume_from, encoder = None, None
    if resume:
        resume_from, cfg, source = _resume(out_dir, source, resume_settings, ranks)
    elif (out_dir / "last.pt").exists() and not force:
        raise ValueError(f"{out_dir} already holds a run; use --resume or another --out")
    elif (held := [n for n in RUN_FILES if (out_dir / n).exists()]) and not force:
        raise ValueError(
            f"{out_dir} already holds {', '.join(held)}; a new run would replace them: "
            "choose another --out (or --force)"
        )
    else:
        cfg, encoder = resolve(cfg, say=note if ranks.main else lambda _: None)
        if encoder is not None and ranks.main:
            m = cfg.model
            note(
                f"starting from the pretrained encoder {encoder.path} ({m.cell} x{m.num_layers}, "
                f"hidden {m.hidden_size}, frame stack {m.frame_stack}); --from-scratch opts out"
            )
    if not ranks.enabled:  # under torchrun each rank takes its own GPU (distributed.py)
        pick_device(cfg.train.device)  # a device this machine lacks: refused before any work
    for teacher in cfg.train.teacher:
        # Found now, not after the data is prepared; a FIFO or a device is
        # refused by name rather than read for ever.
        check_regular(teacher, "teacher file")
    barrier(ranks)  # every rank has checked before rank 0 writes anything
    if ranks.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_toml(cfg, out_dir / "config.toml", only=MFCC_SETTINGS)

    # Rank 0 decodes first and fills the cache; the others then read it.
    data = None
    if ranks.main:
        data = prepare_run_data(source, cfg, noise_dir, cache_dir, show_progress)
    barrier(ranks)
    if data is None:
        data = prepare_run_data(source, cfg, noise_dir, cache_dir, False, say=False)
    decoded = [p for p in data.splits["train"].paths if not p.startswith("<silence:")]
    if not decoded:
        why = ""
        if data.errors:
            path, reason = next(iter(data.errors.items()))
            why = f" ({len(data.errors)} file(s) could not be decoded, e.g. {path}: {reason})"
        raise ValueError(f"{source}: no training clips for this task{why}")
    trainer = Trainer(
        cfg,
        data,
        out_dir,
        str(source),
        verbose=verbose,
        ranks=ranks,
        encoder=encoder,
        cache_dir=cache_dir,
        learning_sources=learning_sources,
    )
    if resume_from is not None:
        trainer.load_resume(resume_from, out_dir / "last.pt")
    trainer.fit(show_progress)
    report = final_report(trainer) if ranks.main else {}
    # The others wait for rank 0's report: a rank that tears its process
    # group down while a peer still holds it aborts (gloo's threads).
    barrier(ranks)
    return report


def run_embedding_model(
    source: str | Path,
    out_dir: str | Path,
    cfg: RunConfig,
    noise_dir: str | Path | None = None,
    cache_dir: Path | None = None,
    show_progress: bool | None = None,
) -> dict:
    """`speechlstm train --frontend embedding`: prepare the data as an MFCC run
    would (same task, splits and --add sources), then train the embedding
    model's heads ([embedding]; seed train.seed; copies drawn with [augment]).
    config.toml records the settings it read (EMBEDDING_SETTINGS)."""
    out_dir = Path(out_dir)
    if (out_dir / MODEL_FILE).exists():
        raise ValueError(f"{out_dir} already holds an embedding model; use another --out")
    data = prepare_run_data(source, cfg, noise_dir, cache_dir, show_progress)
    if len(data.splits["train"].targets) == 0:
        raise ValueError(f"{source}: no training clips for this task")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_toml(cfg, out_dir / "config.toml", only=EMBEDDING_SETTINGS)
    return train_embedding_model(
        data,
        out_dir,
        cfg.embedding,
        cfg.train.seed,
        cache_dir,
        augment=cfg.augment,
        features=cfg.features,
        extra_share=cfg.data.extra_share,
        show_progress=show_progress,
    )
