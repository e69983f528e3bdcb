"""The training loop: balanced batches, on-device augmentation, bf16 autocast, resume.

One epoch = as many clips as the training split holds, drawn class-balanced.
Every random draw of step k in epoch e is seeded from (seed, e, k), so a run
stopped at any step and resumed with `--resume` ends with the same weights as
one that never stopped (on CPU, where kernels are deterministic).

A step reads: augment, the learning sources' batch (sources.py: soft targets,
embedding frames), features, forward, cross-entropy plus the sources' losses,
optimiser step. At
the end of an epoch the pure helpers of history.py build its record, advance
the loop state and decide on early stopping; the trainer saves last.pt (and
best.pt on a new best validation accuracy) and prints one line on stderr. The
run around it (folder, data, final report) is run.py; the schedule and
parameter groups optim.py; the balanced draws sampling.py; the shipped
learning sources distill.py.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from ..config import RunConfig
from ..data.prepare import Prepared
from ..progress import note, progress_bar
from . import checkpoint, threads
from .augment import WaveAugment, pitch_warp, spec_augment
from .checkpoint import Checkpoint, TrainState
from .distill import shipped_sources
from .distributed import SINGLE, Ranks, sum_across
from .encoder import Encoder, apply_encoder, is_encoder_param
from .history import (
    close_epoch,
    epoch_record,
    format_epoch,
    format_grad_norms,
    grad_groups,
    score_split,
    should_stop,
)
from .model import Recognizer, count_parameters
from .optim import lr_factor, parameter_groups, pick_device
from .sampling import balanced_order
from .signals import held_stop_signals, raise_interrupt, signal_handler
from .sources import Batch, LearningSource, Output, SourceRun

# torch's own thread count (physical cores), read before any run changes it:
# the ceiling of the automatic count (threads.py).
TORCH_DEFAULT_THREADS = torch.get_num_threads()


class TrainingInterrupted(Exception):
    """Ctrl-C during training; `last.pt` holds the state to resume from."""


class TrainingDiverged(ValueError):
    """A non-finite loss: the run stops before saving weights it would have ruined."""


def flush_interval(device: torch.device) -> int:
    """Training steps between syncs of the step statistics (Trainer._flush)."""
    return 50 if device.type == "cuda" else 1


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
        learning_sources: list[LearningSource] | None = None,
    ):
        """`learning_sources`: what the student learns from besides its labels
        (sources.py); None: the shipped ones the settings switch on."""
        self.cfg = cfg
        self.ranks = ranks
        self.data = data
        self.out_dir = Path(out_dir)
        self.source = source
        self.verbose = verbose  # per-layer gradient norms on the terminal too
        self.labels = list(data.task.labels)
        self._set_device()
        self._check_global_batch()
        torch.manual_seed(cfg.train.seed)
        self._build_model(encoder)
        self._load_step_inputs(cache_dir, learning_sources)
        self._build_optimizer()
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

    # -- construction (in this order: the seeded draws depend on it) --------
    def _set_device(self) -> None:
        """The run's device, torch's threads for it, and under torchrun one GPU a rank."""
        self.device = pick_device(self.cfg.train.device)
        self._set_threads()
        if self.ranks.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.ranks.local_rank)  # one GPU a rank
            torch.cuda.set_device(self.device)

    def _check_global_batch(self) -> None:
        """train.batch_size is the global batch: it must divide over the ranks."""
        tc = self.cfg.train
        if tc.batch_size % self.ranks.world:
            raise ValueError(
                f"train.batch_size={tc.batch_size} is the global batch: it must divide "
                f"evenly over {self.ranks.world} ranks"
            )

    def _build_model(self, encoder: Encoder | None) -> None:
        """The recognizer on the device (with a pretrained encoder's weights) and
        the classifier the steps call: wrapped for DDP under torchrun."""
        cfg, ranks = self.cfg, self.ranks
        self.model = Recognizer(cfg.features, cfg.model, len(self.labels)).to(self.device)
        if encoder is not None:
            apply_encoder(self.model.classifier, encoder)
        # A pretrained encoder learns at its own rate (train.encoder_lr_scale).
        self.uses_encoder = cfg.train.encoder.startswith("sha256:")
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

    def _load_step_inputs(
        self, cache_dir: Path | None, learning_sources: list[LearningSource] | None
    ) -> None:
        """What every step draws on: the augmentation, the training split on the
        device, and the learning sources, prepared in their order (teachers and
        projectors draw their initial weights from the seeded generator)."""
        cfg, data = self.cfg, self.data
        self.augment = WaveAugment(cfg.augment, cfg.features, torch.from_numpy(data.noise))
        self.augment.to(self.device)
        self.train_audio = torch.from_numpy(data.splits["train"].audio).to(self.device)
        self.train_targets = data.splits["train"].targets
        self.train_from_extra = data.splits["train"].from_extra
        self.sources = shipped_sources(cfg) if learning_sources is None else learning_sources
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"learning sources share a name: {names}")
        run = SourceRun(cfg, self.labels, data.splits["train"].audio, self.device, cache_dir)
        for source in self.sources:
            source.prepare(run)
        self.needs_sequence = any(s.needs_sequence for s in self.sources)

    def _build_optimizer(self) -> None:
        """Steps per epoch, AdamW over the parameter groups, and the learning-rate
        schedule: warmup, decay to the floor, the encoder's own rate."""
        tc = self.cfg.train
        self.steps_per_epoch = max(1, math.ceil(len(self.train_targets) / tc.batch_size))
        self.total_steps = self.steps_per_epoch * tc.epochs
        warmup = round(tc.warmup_epochs * self.steps_per_epoch)
        decay_steps = self.total_steps
        floor = tc.min_lr_ratio
        aids = [p for source in self.sources for p in source.parameters()]
        param_groups, keys = parameter_groups(self.model, tc.weight_decay, self.uses_encoder, aids)
        self.optimizer = torch.optim.AdamW(param_groups, lr=tc.lr)

        def schedule(enc: bool):
            return lambda s: (
                lr_factor(s, decay_steps, warmup, floor)
                * (self._encoder_rate(s // self.steps_per_epoch) if enc else 1.0)
            )

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, [schedule(k[0]) for k in keys]
        )

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
            sources={s.name: s.state_dict() for s in self.sources if s.state_dict() is not None},
        )

    @property
    def eval_model(self) -> Recognizer:
        """The weights validation, test and export see."""
        return self.model

    def load_resume(self, ckpt: Checkpoint, path: Path) -> None:
        checkpoint.load_weights(self.model, ckpt.model, path)
        for source in self.sources:
            source.load_state_dict((ckpt.sources or {}).get(source.name), path)
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
            # The data by content: a resume from a moved dataset is checked by it.
            "data_fingerprint": self.data.fingerprint,
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
            with signal_handler(raise_interrupt, signal.SIGTERM):
                while self.state.epoch < self.cfg.train.epochs:
                    if self.state.step_in_epoch == 0 and self.state.epoch > 0:
                        self._set_threads()  # a job started or ended beside this run
                    clips_per_s = self._train_epoch(show_progress)
                    if self._end_epoch(clips_per_s):
                        break
        except KeyboardInterrupt:
            # While last.pt is saved, a second Ctrl-C (or torchrun's SIGTERM right
            # after the first) must not cut the save and its message short.
            with signal_handler(signal.SIG_IGN, signal.SIGINT, signal.SIGTERM):
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
        with torch.no_grad():  # augment, the sources' batch, features
            b = Batch(index, self.augment(wave, gen), target, self.model.features, self.autocast)
            for source in self.sources:
                b = source.batch(b, gen)
            log_mel = spec_augment(pitch_warp(b.log_mel(), ac.pitch, gen), ac, gen)
            feats = self.model.features.cepstrum(log_mel)  # (B, T, n_mfcc), fp32
        with self.autocast:  # forward, loss
            if self.needs_sequence:
                logits, h = self.classifier(feats, with_sequence=True)
                out = Output(logits.float(), h)
            else:
                out = Output(self.classifier(feats).float())
            loss = F.cross_entropy(out.logits, b.target, label_smoothing=tc.label_smoothing)
            for source in self.sources:
                loss = source.loss(b, out, loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._record_grad_norms()
        if tc.grad_clip > 0:
            total = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
            self._pending_clipped.append(total > tc.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach(), (out.logits.argmax(-1) == b.target).sum()

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
            with held_stop_signals():
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
