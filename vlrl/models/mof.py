"""Mixture-of-Features vision (Section 3.4): a DINOv2-architecture tower beside CLIP.

* Additive MoF: ``alpha * CLIP + (1 - alpha) * DINO`` features, then the model's own adapter
  (projector); the image keeps its CLIP token count.
* Interleaved MoF: CLIP features through the model's projector and DINO features through
  their own adapter, then the two token sequences interleaved in spatial order (twice the
  image tokens).

The merge itself is :mod:`vlrl.triton_kernels` (``mof_additive``, ``mof_interleave``).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Dinov2Config, Dinov2Model

MOF_MODES = ("additive", "interleaved")


class DinoAdapter(nn.Module):
    """Linear-GELU-Linear projection of DINO features into the LLM's embedding space."""

    def __init__(self, dino_hidden: int, text_hidden: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(dino_hidden, text_hidden)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(text_hidden, text_hidden)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(features)))


class MoFVision(nn.Module):
    """The second vision tower, its adapter and the merge rule for LLaVA-architecture models."""

    def __init__(
        self, mode: str, dino_config: Dinov2Config, text_hidden: int, alpha: float = 0.5
    ) -> None:
        super().__init__()
        if mode not in MOF_MODES:
            raise ValueError(f"mof must be one of {MOF_MODES}, got {mode!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"mof alpha must lie in [0, 1], got {alpha}")
        self.mode = mode
        self.alpha = float(alpha)
        self.dino = Dinov2Model(dino_config)
        # Additive MoF mixes before the model's own projector: only interleaving needs one.
        self.adapter = (
            DinoAdapter(dino_config.hidden_size, text_hidden) if mode == "interleaved" else None
        )

    def tokens_per_image(self, clip_tokens: int) -> int:
        """Image placeholder tokens the prompt needs for ``clip_tokens`` CLIP patches."""
        return clip_tokens if self.mode == "additive" else 2 * clip_tokens

    def dino_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, patches, dino_hidden] patch features (the CLS token dropped)."""
        dtype = next(self.dino.parameters()).dtype
        return self.dino(pixel_values=pixel_values.to(dtype)).last_hidden_state[:, 1:]

    def image_features(self, llava_model, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, tokens, text_hidden] merged image features for a LLaVA ``model.model``."""
        from vlrl.triton_kernels import mof_additive, mof_interleave

        config = llava_model.config
        layer = config.vision_feature_layer
        if not isinstance(layer, int):
            raise ValueError("MoF supports a single vision_feature_layer")
        clip_dtype = next(llava_model.vision_tower.parameters()).dtype
        clip_out = llava_model.vision_tower(
            pixel_values.to(clip_dtype), output_hidden_states=True, return_dict=True
        )
        clip = clip_out.hidden_states[layer]
        if config.vision_feature_select_strategy == "default":
            clip = clip[:, 1:]
        dino = self.dino_features(pixel_values)
        if dino.shape[:2] != clip.shape[:2]:
            raise ValueError(
                f"MoF needs the same patch grid in both towers: CLIP {tuple(clip.shape)}, "
                f"DINO {tuple(dino.shape)}"
            )
        projector = llava_model.multi_modal_projector
        if self.mode == "additive":
            if dino.shape[-1] != clip.shape[-1]:
                raise ValueError("additive MoF needs CLIP and DINO features of the same width")
            return projector(mof_additive(clip, dino.to(clip.dtype), self.alpha))
        clip_tokens = projector(clip)
        dino_tokens = self.adapter(dino).to(clip_tokens.dtype)
        return mof_interleave(clip_tokens, dino_tokens)


def tiny_dino_config(image_size: int, patch_size: int, hidden_size: int) -> Dinov2Config:
    """A two-layer DINOv2 tower with the CLIP tower's patch grid."""
    return Dinov2Config(
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        mlp_ratio=2,
        image_size=image_size,
        patch_size=patch_size,
    )
