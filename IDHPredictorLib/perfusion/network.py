"""Convolutional bidirectional LSTM with feed-forward attention (Choi et al. 2019, Eq. 1, Fig. 2).

    x (N, 5, T) -> Conv1d(5->16, k=3, same) + ReLU -> (N, T, 16)
      -> BiLSTM(16 hidden per direction) -> h (N, T, 32)
      -> e_t = a(h_t) = w2 . tanh(W1 h_t)   alpha = softmax_t(e)   c = sum_t alpha_t h_t  (N, 32)
      -> Linear(32 -> 1): logit of IDH mutation
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LstmArchitecture:
    """What a bundle records to rebuild the network."""

    channels: int = 5
    conv_channels: int = 16
    kernel: int = 3
    hidden: int = 16
    dropout: float = 0.2

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class AttentionLSTM(nn.Module):
    """See the module docstring; ``forward`` returns (logits (N,), attention (N, T))."""

    def __init__(self, architecture: LstmArchitecture = LstmArchitecture()) -> None:
        super().__init__()
        self.architecture = architecture
        self.conv = nn.Conv1d(architecture.channels, architecture.conv_channels, architecture.kernel,
                              padding=architecture.kernel // 2)
        self.lstm = nn.LSTM(architecture.conv_channels, architecture.hidden, batch_first=True, bidirectional=True)
        width = 2 * architecture.hidden
        self.attention = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1))
        self.dropout = nn.Dropout(architecture.dropout)
        self.classifier = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.relu(self.conv(x)).transpose(1, 2)      # (N, T, conv)
        hidden, _ = self.lstm(features)                           # (N, T, 2H)
        alpha = torch.softmax(self.attention(hidden).squeeze(-1), dim=1)  # (N, T), sums to 1
        context = torch.bmm(alpha.unsqueeze(1), hidden).squeeze(1)        # (N, 2H)
        return self.classifier(self.dropout(context)).squeeze(-1), alpha
