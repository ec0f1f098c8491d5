"""vlrl: train vision-language models as agents with RL and SFT."""

__version__ = "0.1.0"
