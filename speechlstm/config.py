"""Frozen configuration dataclasses: features, model, augmentation, training, data,
detector, and the embedding model's own section.

Every run saves its resolved `RunConfig` (config.toml and inside each
checkpoint), and the feature and model configs travel into the ONNX metadata,
so inference rebuilds exactly the features the model was trained on.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from .audio import SAMPLE_RATE


@dataclass(frozen=True)
class FeatureConfig:
    """MFCC front-end settings. Defaults: 40 MFCC from 40 mels, 30 ms window, 10 ms hop."""

    sample_rate: int = SAMPLE_RATE  # Hz; the one rate everything runs at
    clip_ms: int = 1000  # model window: what one decision looks at
    n_mfcc: int = 40  # cepstral coefficients a frame (at most n_mels)
    n_mels: int = 40  # mel bands the coefficients come from
    window_ms: float = 30.0  # STFT window (at most n_fft samples)
    hop_ms: float = 10.0  # one frame every hop: 101 frames a 1 s clip
    n_fft: int = 512  # >= window_samples; the window is zero-padded to it
    f_min_hz: float = 20.0  # lowest mel band edge
    f_max_hz: float = 7600.0  # highest mel band edge (at most Nyquist)
    mel_scale: str = "htk"  # "htk" or "slaney"
    log_floor: float = 1e-6  # power floor before log10: keeps digital silence finite
    # "cmn": subtract each coefficient's mean over the clip (cepstral mean
    # normalization) to remove the recording channel; "none": raw MFCC.
    normalize: str = "cmn"

    @property
    def window_samples(self) -> int:
        return round(self.sample_rate * self.window_ms / 1000)

    @property
    def hop_samples(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def clip_samples(self) -> int:
        return round(self.sample_rate * self.clip_ms / 1000)

    @property
    def n_frames(self) -> int:
        # centred STFT: one frame per hop plus the one at sample 0
        return self.clip_samples // self.hop_samples + 1

    def validate(self) -> None:
        if self.sample_rate != SAMPLE_RATE:
            # The runtime, the streaming detector and the exported graph all work at
            # one rate (audio of any rate is resampled to it on the way in).
            raise ValueError(
                f"features.sample_rate={self.sample_rate}: speechlstm works at "
                f"{SAMPLE_RATE} Hz throughout (input audio of any rate is resampled); "
                "leave it out"
            )
        if self.window_samples > self.n_fft:
            raise ValueError(
                f"features.window_ms={self.window_ms} gives {self.window_samples} samples, "
                f"more than n_fft={self.n_fft}"
            )
        if self.f_max_hz > self.sample_rate / 2:
            raise ValueError(f"features.f_max_hz={self.f_max_hz} is above Nyquist")
        if self.n_mfcc > self.n_mels:
            raise ValueError(f"features.n_mfcc={self.n_mfcc} exceeds n_mels={self.n_mels}")
        _check_choice("features.mel_scale", self.mel_scale, ("htk", "slaney"))
        _check_choice("features.normalize", self.normalize, ("cmn", "none"))


# Recurrent cells (see cells.py): lstm is the fused nn.LSTM, the others are
# written from their equations.
CELLS = ("lstm", "peephole", "coupled", "gru", "rnn")
# Model sizes past any command model (the shipped one: 2 x 128): a larger
# number is a typo or a tampered file, refused before data is prepared or a
# tensor allocated (4,096 units x 8 layers is already ~2 GB of weights).
MAX_UNITS = 4096
MAX_LAYERS = 8
MAX_FRAME_STACK = 16


@dataclass(frozen=True)
class ModelConfig:
    """The recurrent classifier: a bidirectional recurrent stack over MFCC frames."""

    cell: str = "lstm"  # one of CELLS (all bidirectional)
    hidden_size: int = 128  # per direction
    num_layers: int = 2  # stacked recurrent layers
    dropout: float = 0.2  # between layers and before the output layer
    pooling: str = "attention"  # "attention" or "mean" over time
    # Stack this many consecutive frames into one step: fewer recurrent steps,
    # faster training and inference, same receptive field.
    frame_stack: int = 1

    def validate(self) -> None:
        _check_choice("model.cell", self.cell, CELLS)
        _check_choice("model.pooling", self.pooling, ("attention", "mean"))
        if self.hidden_size < 1 or self.num_layers < 1 or self.frame_stack < 1:
            raise ValueError("model.hidden_size, num_layers and frame_stack must be >= 1")
        for name, value, most in (
            ("hidden_size", self.hidden_size, MAX_UNITS),
            ("num_layers", self.num_layers, MAX_LAYERS),
            ("frame_stack", self.frame_stack, MAX_FRAME_STACK),
        ):
            if value > most:
                raise ValueError(f"model.{name}={value}: at most {most}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout={self.dropout} must be in [0, 1)")


@dataclass(frozen=True)
class AugmentConfig:
    """Per-batch augmentation on the training device. Each part can be switched off."""

    time_shift_ms: float = 100.0  # uniform shift in [-x, +x]; 0 disables
    noise_prob: float = 0.8  # share of clips that get background noise mixed in
    noise_volume_max: float = 0.1  # noise gain drawn uniformly from [0, max]
    gain_db: float = 6.0  # random level change in [-x, +x] dB; 0 disables
    reverb_prob: float = 0.0  # share of clips convolved with a synthetic room response
    spec_augment: bool = True  # SpecAugment masks on the features
    time_masks: int = 2  # time masks a clip
    time_mask_frames: int = 15  # widest time mask
    freq_masks: int = 2  # mel-band masks a clip
    freq_mask_bins: int = 7  # widest mel-band mask
    # Vocal tract length perturbation (Jaitly & Hinton 2013): each clip's mel
    # axis warped by a factor in [1 - x, 1 + x], moving pitch and formants
    # without changing duration; 0 disables.
    pitch: float = 0.0
    # Speed perturbation (Ko et al., Interspeech 2015), in the waveform stage:
    # each clip resampled about its centre by a factor in [1 - x, 1 + x], which
    # moves tempo, pitch and formants together. Unlike `pitch` it reaches the
    # embedding front-end's augmented copies, which never see a mel axis of
    # ours; 0 disables.
    speed: float = 0.0

    def validate(self) -> AugmentConfig:
        if not 0.0 <= self.pitch < 0.5:
            raise ValueError(f"augment.pitch={self.pitch}: must be in [0, 0.5)")
        if not 0.0 <= self.speed < 0.5:
            raise ValueError(f"augment.speed={self.speed}: must be in [0, 0.5)")
        for name in ("noise_prob", "reverb_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augment.{name}={getattr(self, name)}: must be in [0, 1]")
        for name in ("time_shift_ms", "noise_volume_max", "gain_db"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"augment.{name}={getattr(self, name)}: must be a number >= 0")
        for name in ("time_masks", "time_mask_frames", "freq_masks", "freq_mask_bins"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name}={getattr(self, name)}: must be >= 0")
        return self


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation recipe."""

    epochs: int = 40  # passes over the training clips (fewer with patience)
    batch_size: int = 64  # clips a step (per GPU under torchrun)
    lr: float = 3e-3  # AdamW's peak learning rate
    weight_decay: float = 0.01  # AdamW's, on weight matrices only
    warmup_epochs: float = 1.0  # linear warm-up to lr before the cosine decay
    min_lr_ratio: float = 0.02  # cosine decays to lr * this
    label_smoothing: float = 0.1  # of the cross-entropy targets
    grad_clip: float = 5.0  # max global gradient norm; 0 disables
    patience: int = 10  # epochs without validation improvement before stopping; 0 disables
    balanced: bool = True  # sample every class equally often
    seed: int = 0  # weights, sampling and augmentation draws
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # CPU threads for torch; 0 = the cores free now, re-measured each epoch (threads.py)
    threads: int = 0
    # Knowledge distillation: teachers with the run's labels, checkpoints
    # (best.pt of earlier runs) or embedding models (teacher.safetensors of a
    # `--frontend embedding` run), whose averaged, temperature-softened outputs
    # are a second target; the loss is (1 - w) * cross-entropy + w * T^2 * KL.
    teacher: tuple[str, ...] = ()
    distill_weight: float = 0.5  # w: the teachers' share of the loss
    distill_temperature: float = 2.0  # T: softens both distributions
    # Feature distillation (train/distill.py): weight of a loss that makes the
    # recurrent encoder predict Google's speech embedding of each training clip
    # (16 frames of 96, standardised) through a linear projector that is never
    # exported; needs openwakeword 0.4.0's model files. 0 disables.
    feature_distill: float = 0.0
    # Start from a pretrained encoder (train/encoder.py): "auto" = the shipped
    # one when the model keeps the default or the encoder's shape, "none" =
    # from scratch, or a .safetensors path. A run records "sha256:<digest>".
    encoder: str = "auto"
    # The encoder's learning rate relative to the head's (0: frozen), and
    # epochs it stays frozen first (the head learns before the encoder moves).
    encoder_lr_scale: float = 0.1
    freeze_epochs: int = 0  # epochs the encoder stays frozen while the head learns

    def validate(self) -> TrainConfig:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("train.epochs and train.batch_size must be >= 1")
        if not re.fullmatch(r"auto|cpu|cuda(:\d{1,3})?", self.device):
            raise ValueError(f"train.device={self.device!r}: expected auto, cpu, cuda or cuda:N")
        if self.lr <= 0 or not math.isfinite(self.lr):
            raise ValueError(f"train.lr={self.lr}: must be a positive number")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"train.label_smoothing={self.label_smoothing}: must be in [0, 1)")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ValueError(f"train.distill_weight={self.distill_weight}: must be in [0, 1]")
        if not 0.0 <= self.feature_distill <= 100.0:
            raise ValueError(f"train.feature_distill={self.feature_distill}: must be in [0, 100]")
        if self.distill_temperature <= 0:
            raise ValueError("train.distill_temperature must be > 0")
        if not 0.0 <= self.encoder_lr_scale <= 10.0:
            raise ValueError(f"train.encoder_lr_scale={self.encoder_lr_scale}: must be in [0, 10]")
        if self.freeze_epochs < 0:
            raise ValueError(f"train.freeze_epochs={self.freeze_epochs}: must be >= 0")
        return self


@dataclass(frozen=True)
class EmbeddingConfig:
    """The embedding model (`train --frontend embedding`): Google's speech
    embedding, computed once per clip and cached, under a small BiLSTM head
    (speechlstm/train/embedding_model/). Its seed is train.seed; its copies are
    drawn with the [augment] waveform stage; [model] is the MFCC model's and
    does not reach it. Shape, dropout, label smoothing and 20 epochs chosen on
    validation speakers (docs/models/embedding.md; best epochs fell at 7-14 of 20-40)."""

    hidden_size: int = 64  # head units per direction (1 bidirectional layer); --hidden
    dropout: float = 0.3  # before the head's last layer
    epochs: int = 20  # the best on validation is kept; --epochs
    batch_size: int = 64  # --batch-size
    lr: float = 2e-3  # the peak of a one-cycle schedule; --lr
    weight_decay: float = 0.01  # AdamW's
    label_smoothing: float = 0.1  # of the cross-entropy
    # Augmented copies of each training clip the head learns from besides the
    # clip itself, each drawn once with the [augment] waveform stage (shift,
    # gain, room, noise, speed) and embedded once (cached by content).
    # Synthesized clips have digital silence around the word. Custom words from
    # synthesized speech: 3 copies lift real-voice accuracy from 0.80 to 0.90
    # (docs/models/embedding.md, with recipes/embedding.recipe.toml's
    # augmentation); on real clips they are neutral
    # (recipes/sc12.verifier.recipe.toml sets 0). 0 disables.
    copies: int = 3
    # Heads, each trained with its own seed (seed, seed + 1, ...) on its own
    # augmented copies, their probabilities averaged (one model file, one
    # embedding pass: a head costs ~1% of it). Custom words from synthesized
    # speech: 2 heads 0.905 on real test voices against 0.897 and 0.886 alone
    # (docs/models/embedding.md).
    heads: int = 2

    def validate(self) -> EmbeddingConfig:
        if self.hidden_size < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("embedding.hidden_size, epochs and batch_size must be >= 1")
        if self.hidden_size > MAX_UNITS:
            raise ValueError(f"embedding.hidden_size={self.hidden_size}: at most {MAX_UNITS}")
        if self.lr <= 0 or not math.isfinite(self.lr):
            raise ValueError(f"embedding.lr={self.lr}: must be a positive number")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"embedding.dropout={self.dropout}: must be in [0, 1)")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"embedding.label_smoothing={self.label_smoothing}: must be in [0, 1)")
        if not 0 <= self.copies <= 16:
            raise ValueError(f"embedding.copies={self.copies}: must be in [0, 16]")
        if not 1 <= self.heads <= 8:
            raise ValueError(f"embedding.heads={self.heads}: must be in [1, 8]")
        return self


@dataclass(frozen=True)
class DataConfig:
    """What to train on; recorded so a run can be repeated and exported models described."""

    task: str = "auto"  # auto | sc12 | all
    words: tuple[str, ...] = ()  # the command words (empty: from the task or the folders)
    silence_share: float = 0.1  # silence clips made per word clip in train/val/test when missing
    # Cap on training `_unknown_` clips relative to target-word clips; 0 keeps
    # all. Balanced sampling already shows each class equally often, so keeping
    # every unknown word only adds variety.
    unknown_share: float = 0.0
    # Extra training sources (`train --add DIR`): every clip of each, whatever
    # its split, joins the training split only (words outside the task become
    # `_unknown_`), and their background noise joins the noise bank. Validation
    # and test come from the primary dataset alone, so the figures stay honest.
    extra: tuple[str, ...] = ()
    # Share of each class's training draws taken from the extra sources
    # (balanced sampling); 0 draws every clip alike, whatever its source.
    extra_share: float = 0.0

    def validate(self) -> DataConfig:
        if not 0.0 <= self.extra_share <= 1.0:
            raise ValueError(f"data.extra_share={self.extra_share}: must be in [0, 1]")
        return self


MAX_SPAN_MS = 60_000.0


@dataclass(frozen=True)
class OperatingPoint:
    """One point of the detector's DET curve, stored with the model by
    `tune-detector`: the settings that matched the most commands within
    `max_false_per_hour` false alarms an hour on the validation streams, and
    what they measured there. `verifier_threshold` is the second stage's, for
    a cascade's points (0: no second stage)."""

    max_false_per_hour: float  # the budget this point was tuned for
    threshold: float  # default for every command label
    smoothing_ms: float  # posteriors averaged over this span
    thresholds: tuple[tuple[str, float], ...] = ()  # per-label overrides
    verifier_threshold: float = 0.0  # the second stage's (0: no second stage)
    matched: float = 0.0  # share of the validation commands
    false_per_hour: float = 0.0  # on the validation negatives
    latency_median_ms: float = 0.0  # from a word's end to its report, on validation

    def validate(self) -> None:
        for name in ("max_false_per_hour", "false_per_hour", "latency_median_ms"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"detector point {name}={value} must be a number >= 0")
        for name in ("matched", "verifier_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"detector point {name}={getattr(self, name)} must be in [0, 1]")


@dataclass(frozen=True)
class DetectorConfig:
    """The streaming detector's settings (detect/stream.py). Saved into each exported model
    as its defaults; `transcribe` and `live` flags override them."""

    hop_ms: float = 100.0  # how often the model looks at the last window
    smoothing_ms: float = 300.0  # posteriors averaged over this span (>= one hop)
    threshold: float = 0.8  # default for every command label
    thresholds: tuple[tuple[str, float], ...] = ()  # per-label overrides
    refractory_ms: float = 1000.0  # one utterance, one detection
    # Once over threshold, keep following the score while it rises (at most this
    # long) and report the peak window: a better label and time for little delay.
    peak_wait_ms: float = 200.0
    # Energy gate: windows whose loudest 100 ms is below `gate_dbfs` are taken
    # as silence without running the model (a quiet room costs almost no CPU).
    gate: bool = True
    gate_dbfs: float = -55.0  # the gate's level (-200 to 0)
    # Operating points along the DET curve, fewest false alarms first (detect/tuning.py);
    # `at_sensitivity` picks one. Empty: the settings above are the only ones.
    points: tuple[OperatingPoint, ...] = ()

    def threshold_for(self, label: str) -> float:
        return dict(self.thresholds).get(label, self.threshold)

    def with_overrides(self, **values: Any) -> DetectorConfig:
        """A copy with the given settings replaced; None means "keep this one"
        (the CLI's unset flags), so a model's stored defaults stay in force.
        A threshold given alone replaces the per-label ones too: `--threshold
        0.8` means 0.8 for every command, not only for those the tuning left."""
        given = {k: v for k, v in values.items() if v is not None}
        if "threshold" in given and "thresholds" not in given:
            given["thresholds"] = ()
        out = dataclasses.replace(self, **given)
        out.validate()
        return out

    def foreign_labels(self, labels) -> list[str]:
        """Labels these settings give a threshold (or a point's threshold) that
        `labels` lacks: a detector file tuned for another model."""
        named = {label for label, _ in self.thresholds}
        named |= {label for p in self.points for label, _ in p.thresholds}
        return sorted(named - set(labels))

    def check_labels(self, labels, source: str) -> None:
        """ValueError naming `source` if it sets thresholds for labels not in `labels`."""
        foreign = self.foreign_labels(labels)
        if foreign:
            raise ValueError(
                f"{source}: thresholds for {', '.join(map(repr, foreign))}, which the model "
                f"does not have (its labels: {', '.join(labels)}); tuned for another model?"
            )

    def at_sensitivity(self, sensitivity: float) -> tuple[DetectorConfig, OperatingPoint]:
        """These settings at a stored operating point: 0 the fewest false alarms,
        1 the most commands, the points spread evenly between (with points at
        0.25, 0.5, 1, 2, 4 and 8 an hour: 0.4 is the 1-an-hour point)."""
        if not 0.0 <= sensitivity <= 1.0:
            raise ValueError(f"sensitivity {sensitivity} must be in [0, 1]")
        if not self.points:
            raise ValueError(
                "stores no operating points to choose a sensitivity from; tune them with "
                "`speechlstm tune-detector ... --write FILE`, then use --detector FILE "
                "(or store them: speechlstm store-detector MODEL FILE -o NEW)"
            )
        point = self.points[math.floor(sensitivity * (len(self.points) - 1) + 0.5)]
        cfg = dataclasses.replace(
            self,
            threshold=point.threshold,
            thresholds=point.thresholds,
            smoothing_ms=point.smoothing_ms,
        )
        cfg.validate()
        return cfg, point

    def validate(self) -> None:
        # Spans past a minute are typos (or infinities): no detector waits that long.
        for name in ("hop_ms", "smoothing_ms"):
            if not 0 < getattr(self, name) <= MAX_SPAN_MS:
                raise ValueError(f"detector.{name}={getattr(self, name)} must be in (0, 60000]")
        for name in ("refractory_ms", "peak_wait_ms"):
            if not 0 <= getattr(self, name) <= MAX_SPAN_MS:
                raise ValueError(f"detector.{name}={getattr(self, name)} must be in [0, 60000]")
        if not -200.0 <= self.gate_dbfs <= 0.0:
            raise ValueError(f"detector.gate_dbfs={self.gate_dbfs} must be in [-200, 0]")
        for label, value in (("threshold", self.threshold), *self.thresholds):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"detector threshold for {label}={value} must be in [0, 1]")
        budgets = [p.max_false_per_hour for p in self.points]
        if budgets != sorted(budgets):
            raise ValueError("detector points must come fewest false alarms first")
        for point in self.points:
            point.validate()
            for label, value in (("threshold", point.threshold), *point.thresholds):
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"detector point threshold for {label}={value} not in [0, 1]")


@dataclass(frozen=True)
class RunConfig:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    # The embedding model's own settings (`train --frontend embedding`).
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)

    def validate(self) -> RunConfig:
        self.features.validate()
        self.model.validate()
        self.augment.validate()
        self.train.validate()
        self.data.validate()
        self.detector.validate()
        self.embedding.validate()
        return self


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r}: choose one of {', '.join(choices)}")
