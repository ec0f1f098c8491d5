"""Make the local builders importable and run tests single-threaded."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
# One thread: with the machine shared, a two-thread parallel region stalls on a
# descheduled worker far more than it gains on matrices this small.
torch.set_num_threads(1)
