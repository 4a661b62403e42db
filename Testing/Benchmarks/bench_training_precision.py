"""Benchmark: one training step of the 3-D SegResNet (the segmentation default's network) in
float32 and in bfloat16 autocast, side by side on this machine's device, and what
``train-segmentation --precision auto`` picks here.

A step is what ``volumetric.train_volumetric`` does per crop after the randomisation: forward,
Dice + cross-entropy loss, backward, AdamW. Crop 96³, batch 1, 2 channels (FLAIR, T1c), the
shipped width: the CPU fine-tuning setting of the README. Each precision is timed over
``STEPS`` steps after two warm-up steps, alternating twice so that drift in the machine's
speed shows as a spread rather than as a ratio.

    python Testing/Benchmarks/bench_training_precision.py
"""

from __future__ import annotations

import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

from IDHPredictorLib.segmentation.inference import choose_device, mixed_precision
from IDHPredictorLib.segmentation.volumetric import VolumetricArchitecture, build_network, training_precision

CROP, STEPS = 96, 4


def seconds_per_step(network: torch.nn.Module, optimiser: torch.optim.Optimizer, images: torch.Tensor,
                     targets: torch.Tensor, bfloat16: bool) -> float:
    """Mean wall seconds of ``STEPS`` training steps, after two untimed ones."""
    from monai.losses import DiceLoss

    dice_loss = DiceLoss(sigmoid=True)
    times = []
    for step in range(STEPS + 2):
        started = time.perf_counter()
        with mixed_precision(images.device, bfloat16):
            logits = network(images).float()
        loss = dice_loss(logits, targets) + F.binary_cross_entropy_with_logits(logits, targets)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if images.device.type == "cuda":
            torch.cuda.synchronize()
        if step >= 2:
            times.append(time.perf_counter() - started)
    return float(np.mean(times))


def main() -> None:
    torch.manual_seed(0)
    device = choose_device()
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else \
        f"CPU ({platform.machine()}, {torch.get_num_threads()} torch threads)"
    network = build_network(VolumetricArchitecture(in_channels=2, crop=CROP)).to(device).train()
    optimiser = torch.optim.AdamW(network.parameters(), lr=1e-5)
    images = torch.randn(1, 2, CROP, CROP, CROP, device=device)
    targets = (torch.rand(1, 3, CROP, CROP, CROP, device=device) > 0.8).float()
    rows = {"float32": [], "bfloat16": []}
    for _ in range(2):
        for precision in rows:
            rows[precision].append(seconds_per_step(network, optimiser, images, targets, precision == "bfloat16"))
    print(f"device: {name}, torch {torch.__version__}; 3-D SegResNet training step, crop {CROP}³, batch 1")
    for precision, times in rows.items():
        print(f"  {precision:9s} {np.mean(times):6.2f} s per step (two rounds: {', '.join(f'{t:.2f}' for t in times)})")
    print(f"  float32 / bfloat16 = {np.mean(rows['float32']) / np.mean(rows['bfloat16']):.2f}x; "
          f"--precision auto trains in {training_precision('auto', device)} here")


if __name__ == "__main__":
    main()
