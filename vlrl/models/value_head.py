"""Value head: an MLP on the final hidden state of the last prompt token (Appendix C.2)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

DEFAULT_VALUE_HEAD_HIDDEN = (1024, 512)


class ValueHead(nn.Module):
    """``hidden -> widths[0] -> widths[1] -> 1`` with ReLU between, kept in float32.

    The spec's head is hidden -> 1024 -> 512 -> 1; ``widths`` can shrink it for tiny models.
    """

    def __init__(self, hidden_size: int, widths: Sequence[int] = DEFAULT_VALUE_HEAD_HIDDEN) -> None:
        super().__init__()
        if len(widths) != 2 or min(widths) < 1:
            raise ValueError(f"value head widths must be two positive ints, got {tuple(widths)}")
        self.widths = tuple(int(width) for width in widths)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, self.widths[0]),
            nn.ReLU(),
            nn.Linear(self.widths[0], self.widths[1]),
            nn.ReLU(),
            nn.Linear(self.widths[1], 1),
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """[B, H] hidden states (any float dtype) -> [B] float32 values."""
        return self.mlp(hidden.float()).squeeze(-1)
