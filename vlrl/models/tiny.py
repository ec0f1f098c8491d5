"""The tiny LLaVA-architecture VLM used on CPU: a few hundred thousand random parameters.

Sizes follow /work/shared/FINDINGS.md: a 2-layer CLIP vision tower (hidden 64) on 56 px
images in 7 px patches (64 image tokens), a 2-layer Llama (hidden 96). At this size the
model learns to read NumberLine's digits with SFT in about a thousand steps on 2 cores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig


@dataclass(frozen=True)
class TinyConfig:
    """Sizes of the tiny model; the defaults are the ones measured to learn NumberLine."""

    image_size: int = 56
    patch_size: int = 7
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    text_hidden: int = 96
    text_layers: int = 2
    text_heads: int = 4
    max_positions: int = 2048

    @property
    def image_tokens(self) -> int:
        """CLIP patch tokens per image (the CLS token is dropped)."""
        return (self.image_size // self.patch_size) ** 2

    def to_dict(self) -> dict:
        return asdict(self)


def tiny_llava_config(
    tiny: TinyConfig,
    vocab_size: int,
    *,
    image_token_id: int,
    pad_token_id: int,
    bos_token_id: int,
    eos_token_id: int,
) -> LlavaConfig:
    """The LlavaConfig of the tiny model for a tokenizer of ``vocab_size`` tokens."""
    if tiny.image_size % tiny.patch_size:
        raise ValueError(f"image_size {tiny.image_size} is not a multiple of patch_size")
    vision = CLIPVisionConfig(
        hidden_size=tiny.vision_hidden,
        intermediate_size=2 * tiny.vision_hidden,
        num_hidden_layers=tiny.vision_layers,
        num_attention_heads=tiny.vision_heads,
        image_size=tiny.image_size,
        patch_size=tiny.patch_size,
        projection_dim=tiny.vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=tiny.text_hidden,
        intermediate_size=2 * tiny.text_hidden,
        num_hidden_layers=tiny.text_layers,
        num_attention_heads=tiny.text_heads,
        num_key_value_heads=tiny.text_heads,
        max_position_embeddings=tiny.max_positions,
        tie_word_embeddings=False,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=image_token_id,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
        image_seq_length=tiny.image_tokens,
    )
