"""The training loop: balanced batches, on-device augmentation, bf16 autocast, resume.

One epoch = as many clips as the training split holds, drawn class-balanced.
Every random draw of step k in epoch e is seeded from (seed, e, k), so a run
stopped at any step and resumed with `--resume` ends with the same weights as
one that never stopped (on CPU, where kernels are deterministic).

At the end of an epoch the pure helpers below build its history record
(epoch_record), advance the loop state (close_epoch) and decide on early
stopping (should_stop); the trainer saves last.pt (and best.pt on a new best
validation accuracy) and prints one line (format_epoch) on stderr, under the
epoch's progress bar. The per-layer gradient norms go to metrics.json, and to
the terminal only with `verbose`. final_report tests best.pt and writes
metrics.json and the plots; it never rewrites a checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from .. import metrics
from ..config import RunConfig, save_toml
from ..data.prepare import Prepared, SplitData
from ..files import FolderLock
from ..progress import note, progress_bar
from . import checkpoint, threads
from .augment import WaveAugment, pitch_warp, spec_augment
from .checkpoint import Checkpoint, TrainState
from .distill import EmbeddingTargets, clip_teacher_probs, feature_loss
from .distributed import SINGLE, Ranks, barrier, sum_across
from .encoder import Encoder, apply_encoder, is_encoder_param
from .model import Recognizer, count_parameters
from .teacher import is_teacher_file

# What a run writes into its folder: a new run refuses to replace them (unless forced).
RUN_FILES = ("last.pt", "best.pt", "config.toml", "metrics.json", "curves.png", "confusion.png")

# torch's own thread count (physical cores), read before any run changes it:
# the ceiling of the automatic count (threads.py).
TORCH_DEFAULT_THREADS = torch.get_num_threads()


class TrainingInterrupted(Exception):
    """Ctrl-C during training; `last.pt` holds the state to resume from."""


class TrainingDiverged(ValueError):
    """A non-finite loss: the run stops before saving weights it would have ruined."""


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to `min_ratio` at `total_steps`."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def flush_interval(device: torch.device) -> int:
    """Training steps between syncs of the step statistics (Trainer._flush)."""
    return 50 if device.type == "cuda" else 1


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but no CUDA device is available")
    return torch.device(name)


def balanced_order(
    targets: np.ndarray,
    n: int,
    rng: np.random.Generator,
    from_extra: np.ndarray | None = None,
    extra_share: float = 0.0,
) -> np.ndarray:
    """`n` indices drawn so that every class present is equally likely.

    With `from_extra` and an `extra_share` > 0, that share of each class's
    draws comes from its extra-source clips (all of them when the class has
    no primary clip, none when it has no extra one).
    """
    classes, counts = np.unique(targets, return_counts=True)
    weights = (1.0 / counts)[np.searchsorted(classes, targets)]
    if from_extra is not None and extra_share > 0:
        for cls in classes:
            in_cls = targets == cls
            extra, primary = in_cls & from_extra, in_cls & ~from_extra
            if extra.any() and primary.any():
                weights[extra] = extra_share / extra.sum()
                weights[primary] = (1 - extra_share) / primary.sum()
    return rng.choice(len(targets), size=n, replace=True, p=weights / weights.sum())


def load_teachers(paths: tuple[str, ...], labels: list[str], device: torch.device) -> list:
    """The checkpoint teachers, in eval mode; each must have the run's labels
    (embedding teachers, `.safetensors`, are clip_teacher_probs')."""
    teachers = []
    for path in paths:
        if is_teacher_file(path):
            continue
        ckpt = checkpoint.load(path)
        if list(ckpt.labels) != labels:
            raise ValueError(
                f"teacher {path}: labels {list(ckpt.labels)} differ from this run's {labels}"
            )
        teachers.append(checkpoint.build_model(ckpt, path).to(device))
    return teachers


@contextlib.contextmanager
def _signal_handler(handler, *signals: signal.Signals):
    """`handler` for `signals` within the block (main thread only: Python runs
    signal handlers there and refuses to set them elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


class Trainer:
    """The model, optimizer, schedule and loop state of one run, and the loop over them."""

    def __init__(
        self,
        cfg: RunConfig,
        data: Prepared,
        out_dir: Path,
        source: str,
        verbose: bool = False,
        ranks: Ranks = SINGLE,
        encoder: Encoder | None = None,
        cache_dir: Path | None = None,
    ):
        self.cfg = cfg
        self.ranks = ranks
        self.data = data
        self.out_dir = Path(out_dir)
        self.source = source
        self.verbose = verbose  # per-layer gradient norms on the terminal too
        self.labels = list(data.task.labels)
        tc = cfg.train
        self.device = pick_device(tc.device)
        self._set_threads()
        if ranks.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", ranks.local_rank)  # one GPU a rank
            torch.cuda.set_device(self.device)
        if tc.batch_size % ranks.world:
            raise ValueError(
                f"train.batch_size={tc.batch_size} is the global batch: it must divide "
                f"evenly over {ranks.world} ranks"
            )
        torch.manual_seed(tc.seed)
        self.model = Recognizer(cfg.features, cfg.model, len(self.labels)).to(self.device)
        if encoder is not None:
            apply_encoder(self.model.classifier, encoder)
        # A pretrained encoder learns at its own rate (train.encoder_lr_scale).
        self.uses_encoder = tc.encoder.startswith("sha256:")
        # Under torchrun the classifier is wrapped so that backward averages the
        # gradients over the ranks; the features have no trainable parameters.
        self.classifier = self.model.classifier
        if ranks.enabled:
            self.classifier = DistributedDataParallel(
                self.model.classifier,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
            )
        self.n_params = count_parameters(self.model)
        self.grad_groups = grad_groups(self.model.classifier)
        self.augment = WaveAugment(cfg.augment, cfg.features, torch.from_numpy(data.noise))
        self.augment.to(self.device)
        self.train_audio = torch.from_numpy(data.splits["train"].audio).to(self.device)
        self.train_targets = data.splits["train"].targets
        self.train_from_extra = data.splits["train"].from_extra
        self.teachers = load_teachers(tc.teacher, self.labels, self.device)
        clip_probs = clip_teacher_probs(
            tc.teacher,
            self.labels,
            data.splits["train"].audio,
            tc.distill_temperature,
            cache_dir,
        )
        self.targets = None
        if tc.feature_distill > 0:
            self.targets = EmbeddingTargets(
                data.splits["train"].audio, 2 * cfg.model.hidden_size, cache_dir
            ).to(self.device)
        self.clip_teacher = (
            None if clip_probs is None else torch.from_numpy(clip_probs).to(self.device)
        )
        self.steps_per_epoch = max(1, math.ceil(len(self.train_targets) / tc.batch_size))
        self.total_steps = self.steps_per_epoch * tc.epochs
        warmup = round(tc.warmup_epochs * self.steps_per_epoch)
        decay_steps = self.total_steps
        floor = tc.min_lr_ratio
        # Groups: (encoder?, decayed?). Norms and biases are not weight-decayed
        # (nanoGPT's split); without an encoder there are the two usual groups.
        groups: dict[tuple[bool, bool], list] = {}
        for name, p in self.model.named_parameters():
            enc = self.uses_encoder and is_encoder_param(name)
            groups.setdefault((enc, not (p.ndim < 2 or "norm" in name)), []).append(p)
        keys = sorted(groups, key=lambda k: (k[0], not k[1]))
        param_groups = [
            {"params": groups[k], "weight_decay": tc.weight_decay if k[1] else 0.0} for k in keys
        ]
        if self.targets is not None:  # the projector learns at the head's rate
            param_groups.append(
                {"params": list(self.targets.projector.parameters()), "weight_decay": 0.0}
            )
            keys.append((False, False))
        self.optimizer = torch.optim.AdamW(param_groups, lr=tc.lr)

        def schedule(enc: bool):
            return lambda s: (
                lr_factor(s, decay_steps, warmup, floor)
                * (self._encoder_rate(s // self.steps_per_epoch) if enc else 1.0)
            )

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, [schedule(k[0]) for k in keys]
        )
        # bf16 autocast on GPU only: CPU bf16 LSTMs are slower and less exact.
        self.autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda"
            else contextlib.nullcontext()
        )
        self.state = TrainState()
        # Step statistics not yet in the state (_flush).
        self._pending: list[tuple[torch.Tensor, torch.Tensor, int]] = []
        self._pending_norms: list[dict[str, torch.Tensor]] = []
        self._pending_clipped: list[torch.Tensor] = []
        self.flush_every = flush_interval(self.device)

    # -- checkpoints -------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        """The run as it stands. The tensors are the live ones: save it right away."""
        return Checkpoint(
            model=self.model.state_dict(),
            config=self.cfg,
            labels=tuple(self.labels),
            n_params=self.n_params,
            source=self.source,
            summary=self.summary(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            train_state=self.state,
            projector=None if self.targets is None else self.targets.projector.state_dict(),
        )

    @property
    def eval_model(self) -> Recognizer:
        """The weights validation, test and export see."""
        return self.model

    def load_resume(self, ckpt: Checkpoint, path: Path) -> None:
        checkpoint.load_weights(self.model, ckpt.model, path)
        if self.targets is not None:
            if ckpt.projector is None:
                raise checkpoint.CheckpointError(f"{path}: holds no embedding projector")
            checkpoint.load_weights(self.targets.projector, ckpt.projector, path, "projector")
        try:
            self.optimizer.load_state_dict(ckpt.optimizer)
            self.scheduler.load_state_dict(ckpt.scheduler)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise checkpoint.CheckpointError(
                f"{path}: optimizer or scheduler state does not fit the model ({exc})"
            ) from None
        self.state = ckpt.train_state

    def summary(self) -> dict:
        s = self.state
        return {
            "source": self.source,
            "task_labels": self.labels,
            "clips": self.data.counts(),
            "noise": self.data.noise_source,
            "epochs_completed": s.epoch,
            "best_epoch": s.best_epoch,
            "best_val_accuracy": round(max(s.best_val_acc, 0.0), 4),
            "n_params": self.n_params,
            "device": str(self.device),
        }

    # -- the loop ----------------------------------------------------------
    def fit(self, show_progress: bool | None = None) -> TrainState:
        if not self.ranks.main:
            show_progress = False
        self._note(
            f"model: {self.cfg.model.cell} x{self.cfg.model.num_layers} "
            f"hidden {self.cfg.model.hidden_size}, {self.n_params:,} parameters; "
            f"device {self.device}; {len(self.train_targets)} training clips"
            + (f"; {self.ranks.world} ranks" if self.ranks.enabled else "")
        )
        try:
            # SIGTERM stops training as Ctrl-C does, keeping the work: `kill`, a job
            # scheduler, and torchrun, which sends it to its workers when it stops.
            with _signal_handler(_raise_interrupt, signal.SIGTERM):
                while self.state.epoch < self.cfg.train.epochs:
                    if self.state.step_in_epoch == 0 and self.state.epoch > 0:
                        self._set_threads()  # a job started or ended beside this run
                    clips_per_s = self._train_epoch(show_progress)
                    if self._end_epoch(clips_per_s):
                        break
        except KeyboardInterrupt:
            # While last.pt is saved, a second Ctrl-C (or torchrun's SIGTERM right
            # after the first) must not cut the save and its message short.
            with _signal_handler(signal.SIG_IGN, signal.SIGINT, signal.SIGTERM):
                self._flush()
                s = self.state
                if self.ranks.main:
                    checkpoint.save(self.checkpoint(), self.out_dir / "last.pt")
            if not self.ranks.main:
                raise TrainingInterrupted(f"rank {self.ranks.rank}: interrupted") from None
            raise TrainingInterrupted(
                f"interrupted at epoch {s.epoch + 1}, step {s.step_in_epoch}; "
                f"saved {self.out_dir / 'last.pt'}; continue with --resume"
            ) from None
        return self.state

    def _encoder_rate(self, epoch: int) -> float:
        """The encoder's learning-rate factor in `epoch` (0 while frozen)."""
        tc = self.cfg.train
        return 0.0 if epoch < tc.freeze_epochs else tc.encoder_lr_scale

    def _freeze_encoder(self) -> None:
        """While the encoder's rate is 0, skip its gradients and keep its input
        statistics (one process; under DDP the rate alone holds it still)."""
        if not self.uses_encoder:
            return
        frozen = self._encoder_rate(self.state.epoch) == 0.0
        classifier = self.model.classifier
        if frozen:
            classifier.input_norm.eval()
        if self.ranks.enabled:
            return
        for name, p in classifier.named_parameters():
            if is_encoder_param(name):
                p.requires_grad_(not frozen)

    def _set_threads(self) -> None:
        """torch's intra-op threads: the pinned count, or the cores free now (threads.py)."""
        if self.cfg.train.threads == 0 and self.device.type == "cuda":
            return  # the GPU does the work; no half-second sample an epoch
        want = threads.auto_threads(self.cfg.train.threads, TORCH_DEFAULT_THREADS)
        if want is None or want == torch.get_num_threads():
            return
        if self.cfg.train.threads == 0 and hasattr(self, "state"):
            self._note(f"threads: {torch.get_num_threads()} -> {want} (cores free now)")
        torch.set_num_threads(want)

    def _train_epoch(self, show_progress: bool | None) -> float:
        """Run the epoch's remaining steps; returns the training rate in clips/s."""
        tc, s = self.cfg.train, self.state
        rng = np.random.default_rng([tc.seed, s.epoch])
        order = balanced_order(
            self.train_targets,
            len(self.train_targets),
            rng,
            self.train_from_extra,
            self.cfg.data.extra_share,
        )
        self.model.train()
        self._freeze_encoder()
        started, clips = time.perf_counter(), 0
        desc = f"epoch {s.epoch + 1}/{tc.epochs}"
        with progress_bar(desc, self.steps_per_epoch, enabled=show_progress, unit="steps") as adv:
            adv(s.step_in_epoch)
            while s.step_in_epoch < self.steps_per_epoch:
                k = s.step_in_epoch
                # Every rank draws the same global batch and takes its own slice.
                idx = order[k * tc.batch_size : (k + 1) * tc.batch_size]
                idx = idx[self.ranks.rank :: self.ranks.world]
                loss, correct = self._step(idx, seed=(tc.seed, s.epoch, k))
                self._pending.append((loss, correct, len(idx)))
                s.step_in_epoch += 1
                s.global_step += 1
                clips += len(idx)
                if len(self._pending) >= self.flush_every or (
                    s.step_in_epoch == self.steps_per_epoch
                ):
                    self._flush()
                rate = clips / max(time.perf_counter() - started, 1e-9)
                seen = max(s.seen, 1)  # 0 until a GPU run's first flush
                adv(
                    1,
                    info=f"loss {s.loss_sum / seen:.3f} acc {s.correct / seen:.3f} "
                    f"{rate:.0f} clips/s",
                )
        return clips / max(time.perf_counter() - started, 1e-9)

    def _step(
        self, idx: np.ndarray, seed: tuple[int, int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step; returns the loss and the number right, on the device."""
        tc, ac = self.cfg.train, self.cfg.augment
        step_seed = (seed[0] * 1_000_003 + seed[1]) * 100_003 + seed[2]
        if self.ranks.enabled:  # each rank its own draws (one process: unchanged)
            step_seed = step_seed * 131 + self.ranks.rank
        torch.manual_seed(step_seed)  # dropout draws
        gen = torch.Generator(device=self.device).manual_seed(step_seed)
        index = torch.from_numpy(idx).to(self.device)
        wave = self.train_audio[index].float() / 32767.0  # (B, S)
        target = torch.from_numpy(self.train_targets[idx]).to(self.device)
        with torch.no_grad():  # augment, features, teachers' targets
            wave = self.augment(wave, gen)
            clean_mel = self.model.features.log_mel(wave)
            log_mel = spec_augment(pitch_warp(clean_mel, ac.pitch, gen), ac, gen)
            feats = self.model.features.cepstrum(log_mel)  # (B, T, n_mfcc), fp32
            teacher_probs = self._teacher_probs(wave, clean_mel) if self.teachers else None
            if self.clip_teacher is not None:
                # Each teacher counts alike, checkpoint or embedding.
                n_ckpt = len(self.teachers)
                clip_p = self.clip_teacher[index]
                teacher_probs = (
                    clip_p
                    if teacher_probs is None
                    else (teacher_probs * n_ckpt + clip_p) / (n_ckpt + 1)
                )
        h = None
        with self.autocast:  # loss
            if self.targets is not None:
                logits, h = self.classifier(feats, with_sequence=True)
            else:
                logits = self.classifier(feats)
            logits = logits.float()
            loss = F.cross_entropy(logits, target, label_smoothing=tc.label_smoothing)
            if teacher_probs is not None:
                t, w = tc.distill_temperature, tc.distill_weight
                kl = F.kl_div(F.log_softmax(logits / t, -1), teacher_probs, reduction="batchmean")
                loss = (1 - w) * loss + w * t * t * kl
            if h is not None:
                loss = loss + tc.feature_distill * feature_loss(self.targets, h, index)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._record_grad_norms()
        if tc.grad_clip > 0:
            total = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
            self._pending_clipped.append(total > tc.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach(), (logits.argmax(-1) == target).sum()

    def _teacher_probs(self, wave: torch.Tensor, log_mel: torch.Tensor) -> torch.Tensor:
        """The teachers' mean temperature-softened posteriors on the augmented batch
        (before SpecAugment: the teacher should see the word the student must learn)."""
        t = self.cfg.train.distill_temperature
        probs = 0.0
        for teacher in self.teachers:
            if teacher.features.cfg == self.model.features.cfg:
                feats = teacher.features.cepstrum(log_mel)
            else:
                feats = teacher.features.cepstrum(teacher.features.log_mel(wave))
            with self.autocast:
                probs = probs + F.softmax(teacher.classifier(feats).float() / t, -1)
        return probs / len(self.teachers)

    def _note(self, message: str) -> None:
        if self.ranks.main:
            note(message)

    def _record_grad_norms(self) -> None:
        """Add this step's gradient norm per layer group (before clipping) to the
        epoch's sums: vanishing or exploding gradients show up in metrics.json."""
        norms = {}
        for name, params in self.grad_groups.items():
            grads = [p.grad for p in params if p.grad is not None]
            if grads:
                norms[name] = torch.nn.utils.get_total_norm(grads)
        self._pending_norms.append(norms)

    def _flush(self) -> None:
        """Move the pending steps' loss, accuracy and gradient statistics into the
        state, with one device sync for all of them: on a GPU a sync per step would
        stall the queue of kernels (flush_every = 50 there, 1 on the CPU)."""
        s = self.state
        if self._pending:
            values = torch.stack(
                [torch.stack([loss.float(), correct.float()]) for loss, correct, _ in self._pending]
            ).tolist()
            for k, ((loss, correct), (_, _, n)) in enumerate(
                zip(values, self._pending, strict=True)
            ):
                if not math.isfinite(loss):
                    step = s.step_in_epoch - len(self._pending) + k + 1
                    self._pending = []
                    raise TrainingDiverged(
                        f"training diverged at epoch {s.epoch + 1}, step {step}: the loss is "
                        f"{loss}; nothing was saved from this epoch (last.pt and best.pt "
                        "hold the last good epochs); try a lower --lr or --grad-clip"
                    )
                s.loss_sum += loss * n
                s.correct += int(correct)
                s.seen += n
        for norms in self._pending_norms:
            for name, norm in norms.items():
                s.grad_norm_sums[name] = s.grad_norm_sums.get(name, 0.0) + float(norm)
        s.clipped += sum(int(c) for c in self._pending_clipped)
        self._pending, self._pending_norms, self._pending_clipped = [], [], []

    def _end_epoch(self, clips_per_s: float) -> bool:
        """Validate, record and checkpoint the epoch, print its line; True to stop early."""
        # Every rank validates on the whole split: the same weights give the
        # same decision everywhere, with no broadcast.
        val = score_split(self.eval_model, self.data.splits["validation"], self.device)
        s = self.state
        loss_sum, correct, seen, rate = sum_across(
            [s.loss_sum, s.correct, s.seen, clips_per_s], self.ranks, self.device
        )
        s = replace(s, loss_sum=loss_sum, correct=int(correct), seen=int(seen))
        record = epoch_record(s, val, self.scheduler.get_last_lr()[0], rate)
        self.state = close_epoch(s, record)
        improved = self.state.best_epoch == self.state.epoch
        if self.ranks.main:
            ckpt = self.checkpoint()
            if improved:
                checkpoint.save(ckpt, self.out_dir / "best.pt")
            checkpoint.save(ckpt, self.out_dir / "last.pt")
        self._note(format_epoch(record, self.cfg.train.epochs, improved))
        if self.verbose:
            self._note(format_grad_norms(record))
        patience = self.cfg.train.patience
        if should_stop(self.state.bad_epochs, patience):
            self._note(f"early stop: no validation improvement for {patience} epochs")
            return True
        return False


# -- the end of an epoch, as pure functions ----------------------------------
def epoch_record(s: TrainState, val: dict, lr: float, clips_per_s: float) -> dict:
    """The history entry (metrics.json, curves.png) of the epoch `s` has just run."""
    steps = max(s.step_in_epoch, 1)
    return {
        "epoch": s.epoch + 1,
        "train_loss": s.loss_sum / max(s.seen, 1),
        "train_accuracy": s.correct / max(s.seen, 1),
        "val_loss": val["loss"],
        "val_accuracy": val["accuracy"],
        "lr": lr,
        "clips_per_s": round(clips_per_s, 1),
        "grad_norm": {k: round(v / steps, 5) for k, v in s.grad_norm_sums.items()},
        "clipped_steps": s.clipped,
    }


def close_epoch(s: TrainState, record: dict) -> TrainState:
    """The state after the epoch of `record`: history extended, best tracked, sums reset."""
    improved = record["val_accuracy"] > s.best_val_acc
    return replace(
        s,
        epoch=s.epoch + 1,
        step_in_epoch=0,
        loss_sum=0.0,
        correct=0,
        seen=0,
        grad_norm_sums={},
        clipped=0,
        history=[*s.history, record],
        best_val_acc=record["val_accuracy"] if improved else s.best_val_acc,
        best_epoch=s.epoch + 1 if improved else s.best_epoch,
        bad_epochs=0 if improved else s.bad_epochs + 1,
    )


def should_stop(bad_epochs: int, patience: int) -> bool:
    """Early stopping: `patience` epochs in a row without a better validation accuracy."""
    return patience > 0 and bad_epochs >= patience


def format_epoch(record: dict, epochs: int, improved: bool) -> str:
    """The epoch's one terminal line (under 80 columns, so it never wraps); * marks a new best."""
    return (
        f"epoch {record['epoch']}/{epochs}: loss {record['train_loss']:.3f} "
        f"acc {record['train_accuracy']:.3f} | val loss {record['val_loss']:.3f} "
        f"acc {record['val_accuracy']:.3f}{' *' if improved else ''} | "
        f"{record['clips_per_s']:.0f} clips/s"
    )


def format_grad_norms(record: dict) -> str:
    """The --verbose line: mean gradient norm per layer group, and clipped steps."""
    grads = " ".join(f"{k} {v:.3g}" for k, v in record["grad_norm"].items())
    clipped = record["clipped_steps"]
    return f"  gradient norm per layer (mean over steps): {grads}" + (
        f"; clipped {clipped} steps" if clipped else ""
    )


def grad_groups(classifier) -> dict[str, list[torch.nn.Parameter]]:
    """Parameters grouped by layer for the gradient-norm log: input_norm,
    rnn.0 .. rnn.N-1 (both directions of each recurrent layer), pool, head."""
    groups: dict[str, list] = {}
    for name, p in classifier.named_parameters():
        if name.startswith("rnn."):
            # nn.LSTM names: lstm.weight_ih_l1_reverse; equation stacks: layers.1.0.weight_ih
            match = re.search(r"_l(\d+)|layers\.(\d+)\.", name)
            key = f"rnn.{next(g for g in match.groups() if g is not None)}"
        else:
            key = name.split(".")[0]
        groups.setdefault(key, []).append(p)
    return groups


@torch.no_grad()
def score_split(model: Recognizer, split: SplitData, device: torch.device, batch_size: int = 256):
    """Loss, accuracy, predictions and probabilities of `model` on a split (no augmentation)."""
    model.eval()
    n = len(split.targets)
    probs = np.zeros((n, model.classifier.head.out_features), dtype=np.float32)
    for start in range(0, n, batch_size):
        wave = (
            torch.from_numpy(split.audio[start : start + batch_size]).to(device).float() / 32767.0
        )
        p, _ = model(wave)
        probs[start : start + len(wave)] = p.float().cpu().numpy()
    model.train()
    if n == 0:
        return {
            "loss": float("nan"),
            "accuracy": 0.0,
            "predictions": np.zeros(0, int),
            "probs": probs,
        }
    picked = probs[np.arange(n), split.targets]
    loss = float(-np.log(np.clip(picked, 1e-12, None)).mean())
    preds = probs.argmax(axis=1)
    return {
        "loss": loss,
        "accuracy": float((preds == split.targets).mean()),
        "predictions": preds,
        "probs": probs,
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
) -> dict:
    """Train on `source`, write the run folder, return the final report.

    `verbose` also prints each epoch's gradient norm per layer group (always in metrics.json).
    Under torchrun (`ranks`), only rank 0 writes and reports; the others return {}.
    A new run refuses a folder holding another run's files unless `force`.
    """
    out_dir = Path(out_dir)
    # One run a folder: a second run into it is refused while this one holds it.
    lock = FolderLock(out_dir, "run folder") if ranks.main else None
    try:
        return _run_training(
            source, out_dir, cfg, resume, noise_dir, cache_dir, show_progress, verbose, ranks, force
        )
    finally:
        if lock is not None:
            lock.release()


def _run_training(
    source, out_dir: Path, cfg, resume, noise_dir, cache_dir, show_progress, verbose, ranks, force
) -> dict:
    from ..data.prepare import prepare
    from .encoder import resolve

    resume_from, encoder = None, None
    if resume:
        resume_from = checkpoint.load(out_dir / "last.pt", resumable=True)
        cfg, source = resume_from.config, resume_from.source
        if ranks.main:
            note(f"resuming {out_dir / 'last.pt'} at epoch {resume_from.train_state.epoch + 1}")
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
    barrier(ranks)  # every rank has checked before rank 0 writes anything
    if ranks.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_toml(cfg, out_dir / "config.toml")

    def load():
        return prepare(
            source,
            cfg.data,
            cfg.features,
            cfg.train.seed,
            noise_dir=noise_dir,
            cache_dir=cache_dir,
            show_progress=show_progress if ranks.main else False,
        )

    # Rank 0 decodes first and fills the cache; the others then read it.
    data = load() if ranks.main else None
    barrier(ranks)
    if data is None:
        data = load()
    if ranks.main:
        note(
            f"{data.index.summary()}; task: {', '.join(data.task.labels)}; "
            f"clips per split: {data.counts()}; noise: {data.noise_source}"
        )
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
    )
    if resume_from is not None:
        trainer.load_resume(resume_from, out_dir / "last.pt")
    trainer.fit(show_progress)
    report = final_report(trainer) if ranks.main else {}
    # The others wait for rank 0's report: a rank that tears its process
    # group down while a peer still holds it aborts (gloo's threads).
    barrier(ranks)
    return report
