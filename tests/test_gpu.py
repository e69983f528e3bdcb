"""The GPU path against the CPU one: cuDNN LSTM forward and backward, bf16 training
steps, and the GPU-resident augmentation and features. Skipped where no CUDA device is
(run them on a GPU machine: DEVELOPERS.md says how)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config

pytestmark = [pytest.mark.gpu, pytest.mark.train]


@pytest.fixture(autouse=True)
def cuda():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    # Exact fp32 on both sides: TF32 would make cuDNN differ by design.
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _recipe():
    from speechlstm.config_text import load_toml

    return load_toml(Path(__file__).resolve().parents[1] / "recipes" / "sc12.recipe.toml")


def test_cudnn_lstm_forward_and_backward_match_the_cpu(cuda):
    import torch

    from speechlstm.train.model import SpeechClassifier

    cfg = _recipe()
    # Training mode (cuDNN's RNN backward needs it) without dropout, so both
    # sides compute the same function; BatchNorm uses the batch's statistics.
    model_cfg = dataclasses.replace(cfg.model, dropout=0.0)
    torch.manual_seed(0)
    cpu = SpeechClassifier(cfg.features.n_mfcc, 12, model_cfg).train()
    gpu = SpeechClassifier(cfg.features.n_mfcc, 12, model_cfg).to(cuda).train()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(16, 101, cfg.features.n_mfcc)
    target = torch.randint(0, 12, (16,))
    out_cpu = cpu(x)
    out_gpu = gpu(x.to(cuda))
    assert (out_gpu.cpu() - out_cpu).abs().max() < 1e-4
    torch.nn.functional.cross_entropy(out_cpu, target).backward()
    torch.nn.functional.cross_entropy(out_gpu, target.to(cuda)).backward()
    for (name, a), (_, b) in zip(cpu.named_parameters(), gpu.named_parameters(), strict=True):
        scale = a.grad.abs().max().clamp_min(1e-6)
        assert ((b.grad.cpu() - a.grad).abs().max() / scale) < 1e-3, name


def test_bf16_training_step_tracks_fp32(cuda):
    import torch

    from speechlstm.train.model import SpeechClassifier

    cfg = _recipe()
    torch.manual_seed(0)
    model = SpeechClassifier(cfg.features.n_mfcc, 12, cfg.model).to(cuda)
    x = torch.randn(64, 101, cfg.features.n_mfcc, device=cuda)
    target = torch.randint(0, 12, (64,), device=cuda)
    fp32 = torch.nn.functional.cross_entropy(model(x), target)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        bf16 = torch.nn.functional.cross_entropy(model(x).float(), target)
    bf16.backward()
    assert torch.isfinite(bf16) and abs(float(bf16) - float(fp32)) < 0.05 * float(fp32)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_gpu_features_match_the_cpu(cuda):
    import torch

    from speechlstm.train.features import MFCC

    cfg = _recipe().features
    t = torch.arange(16000) / 16000
    wave = torch.stack([0.3 * torch.sin(2 * torch.pi * f * t) for f in (220, 660, 1500)])
    wave = wave + 0.01 * torch.randn_like(wave)
    mfcc = MFCC(cfg)
    cpu = mfcc(wave)
    gpu = mfcc.to(cuda)(wave.to(cuda)).cpu()
    assert cpu.shape == gpu.shape
    assert (cpu - gpu).abs().max() < 1e-3 * cpu.abs().max()


def test_gpu_augmentation_draws_like_the_cpu(cuda):
    """Different generators (Philox on the GPU), the same distributions: the
    quantiles of each clip's gain and of the masked share agree."""
    import torch

    from speechlstm.train.augment import WaveAugment, pitch_warp, spec_augment
    from speechlstm.train.features import MFCC

    cfg = _recipe()
    noise = 0.05 * torch.randn(4, 16000 * 5)
    t = torch.arange(16000) / 16000
    wave = (0.2 * torch.sin(2 * torch.pi * 440 * t)).repeat(2048, 1)

    def stats(device):
        gen = torch.Generator(device=device).manual_seed(0)
        aug = WaveAugment(cfg.augment, cfg.features, noise).to(device)
        out = aug(wave.to(device), gen)
        ratio = (out.pow(2).mean(1).sqrt() / wave.to(device).pow(2).mean(1).sqrt()).cpu()
        log_mel = MFCC(cfg.features).to(device).log_mel(out)
        warped = pitch_warp(log_mel, 0.1, gen)
        masked = spec_augment(warped, cfg.augment, gen)
        share = (masked != warped).float().mean(dim=(1, 2)).cpu()
        return np.quantile(ratio.numpy(), [0.1, 0.5, 0.9]), float(share.mean())

    cpu_q, cpu_share = stats(torch.device("cpu"))
    gpu_q, gpu_share = stats(cuda)
    assert np.allclose(gpu_q, cpu_q, rtol=0.1), (cpu_q, gpu_q)
    assert abs(gpu_share - cpu_share) < 0.02


def test_training_keeps_the_sample_bank_and_augmentation_on_the_gpu(cuda, tone_dataset, tmp_path):
    import torch

    from speechlstm.data.prepare import prepare
    from speechlstm.train.trainer import Trainer

    cfg = tiny_config(epochs=1)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device="cuda"))
    data = prepare(tone_dataset, cfg.data, cfg.features, 0, show_progress=False)
    trainer = Trainer(cfg, data, tmp_path, str(tone_dataset))
    assert trainer.train_audio.device.type == "cuda"
    assert trainer.augment.noise.device.type == "cuda"
    assert next(trainer.model.parameters()).device.type == "cuda"
    trainer.fit(show_progress=False)
    assert torch.cuda.max_memory_allocated() > trainer.train_audio.numel() * 2
