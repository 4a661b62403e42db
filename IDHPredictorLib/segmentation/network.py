"""The segmentation CNN of Li et al. 2017 (after Pereira et al. 2016), written so that its fully
connected layers are convolutions: the same weights classify one 33x33 patch or a whole slice.

Valid (unpadded) 3x3 convolutions keep every output a function of its own 33x33 window only,
which is what makes dense inference exactly equal to patch-by-patch inference.

    input (N, C, 33, 33)                       C = number of modalities (1-4)
    conv1-3  3x3, 64 each, leaky ReLU  -> (N, 64, 27, 27)
    pool1    3x3 max, stride 2         -> (N, 64, 13, 13)
    conv4-6  3x3, 128 each, leaky ReLU -> (N, 128, 7, 7)
    pool2    3x3 max, stride 2         -> (N, 128, 3, 3)
    fc7      3x3 conv = fully connected, width W, leaky ReLU, dropout -> (N, W, 1, 1)
    fc8      1x1 conv = fully connected, 4 classes (background, core, oedema, enhancing)

On an (H, W) slice padded by 16 pixels, the output is (ceil((H-1)/4)+1, ceil((W-1)/4)+1) after
padding H, W up to 4k+1: output (i, j) is the class scores of the patch centred on pixel (4i, 4j). Layer names are stable: DLR features read them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from torch import nn

PATCH = 33
HALF = PATCH // 2
STRIDE = 4  # two stride-2 poolings
CLASSES = 4  # background, necrotic/non-enhancing core (1), oedema (2), enhancing (4)
CLASS_TO_LABEL = (0, 1, 2, 4)
CONV_WIDTHS = (64, 64, 64, 128, 128, 128)
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "fc7", "fc8")


@dataclass(frozen=True)
class Architecture:
    """What a bundle must record to rebuild the network."""

    in_channels: int
    fc_width: int = 512
    dropout: float = 0.5
    # Deviation: Li et al. 2017 write ReLU; we keep the leaky ReLU (slope 0.333) of Pereira et al.
    # 2016, whose network theirs extends: with unpadded convolutions and few simulated training
    # cases it trains more reliably (no dead units). 0 gives the paper's plain ReLU.
    leaky_slope: float = 0.333

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class SegmentationCNN(nn.Module):
    """Patch classifier / dense slice segmenter; see the module docstring for shapes."""

    def __init__(self, architecture: Architecture) -> None:
        super().__init__()
        self.architecture = architecture
        widths = (architecture.in_channels, *CONV_WIDTHS)
        for index in range(6):
            setattr(self, f"conv{index + 1}", nn.Conv2d(widths[index], widths[index + 1], 3))
        self.pool1 = nn.MaxPool2d(3, stride=2)
        self.pool2 = nn.MaxPool2d(3, stride=2)
        self.fc7 = nn.Conv2d(CONV_WIDTHS[-1], architecture.fc_width, 3)
        self.fc8 = nn.Conv2d(architecture.fc_width, CLASSES, 1)
        self.activation = nn.LeakyReLU(architecture.leaky_slope)
        self.dropout = nn.Dropout(architecture.dropout)  # element-wise: each lattice position its own mask

    def forward(self, x: torch.Tensor, until: str | None = None) -> torch.Tensor:
        """Class scores (N, 4, h, w); with ``until`` a layer name, that layer's activations."""
        for name, activations in self._stages(x):
            if name == until:
                return activations
        return activations

    def layer_outputs(self, x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Activations of several ``layers`` from one pass (stops after the deepest one asked for)."""
        unknown = set(layers) - set(LAYERS)
        if unknown:
            raise ValueError(f"unknown layer(s) {sorted(unknown)}; choose from {', '.join(LAYERS)}")
        outputs = {}
        for name, activations in self._stages(x):
            if name in layers:
                outputs[name] = activations
                if len(outputs) == len(set(layers)):
                    break
        return outputs

    def _stages(self, x: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield (layer name, activations) in order; pooling happens between the named layers."""
        for index in range(1, 7):
            x = self.activation(getattr(self, f"conv{index}")(x))
            yield f"conv{index}", x
            if index == 3:
                x = self.pool1(x)
            elif index == 6:
                x = self.pool2(x)
        x = self.activation(self.fc7(x))
        yield "fc7", x
        yield "fc8", self.fc8(self.dropout(x))


# Where each layer's output (i, j) sits on the input: the centre of its receptive field is input
# pixel (offset + stride * i, offset + stride * j) for an unpadded input. Derived from the layer
# list above (valid 3x3 convs add 1 to the offset, 3x3/2 pools double the stride) and checked in a test.
LAYER_GEOMETRY: dict[str, tuple[int, int]] = {
    "conv1": (1, 1), "conv2": (1, 2), "conv3": (1, 3),
    "conv4": (2, 6), "conv5": (2, 8), "conv6": (2, 10),
    "fc7": (4, 16), "fc8": (4, 16),
}
