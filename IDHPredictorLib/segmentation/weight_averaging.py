"""Average the weights of a 3-D segmentation bundle and one fine-tuned from it (WiSE-FT; Wortsman
et al., "Robust fine-tuning of zero-shot models", CVPR 2022).

Fine-tuning with a harder randomisation gains on real MRI and loses on simulated patients; the
average of the two weight sets can keep the gains of both (measured in the README). It makes
sense only for a network and its own fine-tuned descendant: same architecture, same modalities.
The averaged bundle's window and smallest enhancing volume are chosen again afterwards
(``idh-predictor tune-segmentation``), and its metrics measured again; none are carried over.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..bundle import file_sha256
from ..errors import InputError
from .model_bundle import WEIGHTS, load_model, save_volumetric_model


def average_bundles(start: str | Path, fine_tuned: str | Path, out: str | Path, share: float = 0.5) -> Path:
    """Write to ``out`` a bundle whose weights are (1 - share) x ``start``'s + share x
    ``fine_tuned``'s; its record is the fine-tuned one's (training, input statistics) with both
    sources named, and without the window choice, enhancing rule and metrics of either."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must lie in [0, 1], got {share}")
    first, second = load_model(start), load_model(fine_tuned)
    for model, folder in ((first, start), (second, fine_tuned)):
        if not model.is_volumetric:
            raise InputError(folder, "is a 2-D segmentation network; only 3-D bundles are averaged",
                             "Pass two 3-D SegResNet bundles, the second fine-tuned from the first")
    first_architecture, second_architecture = first.network.architecture, second.network.architecture
    # the training crop may differ (a fine-tuning may use smaller crops); the layers may not
    if (first_architecture.in_channels, first_architecture.init_filters, first.modalities) != \
            (second_architecture.in_channels, second_architecture.init_filters, second.modalities):
        raise InputError(fine_tuned, f"has another architecture or modalities than {start}",
                         "Average a bundle only with one fine-tuned from it (train-segmentation --fine-tune)")
    first_state = first.network.state_dict()
    averaged = {name: torch.lerp(first_state[name].float(), value.float(), share) if value.is_floating_point()
                else value for name, value in second.network.state_dict().items()}
    network = second.network
    network.load_state_dict(averaged)
    record = {key: value for key, value in second.record.items()
              if key in ("description", "trained_on", "normalisation", "training", "input_statistics")}
    record["inference"] = {key: value for key, value in second.record["inference"].items() if key != "window_choice"}
    record["weight_averaging"] = {
        "share_of_fine_tuned": share,
        "sources": [{"bundle": str(Path(folder).resolve()), WEIGHTS: file_sha256(Path(folder) / WEIGHTS)}
                    for folder in (start, fine_tuned)],
        "note": "re-tune window and smallest enhancing volume (tune-segmentation --record) before use"}
    record["description"] += f"; weights averaged, {1 - share:g} x start + {share:g} x fine-tuned"
    return save_volumetric_model(out, network, replace(second_architecture, window=None), second.modalities, record)
