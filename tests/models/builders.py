"""Tiny random stand-ins for the real backbones, built locally from configs.

* a Llama-3-style tokenizer (byte-level BPE behind Llama 3's split regex);
* a Mistral-style tokenizer (sentencepiece-like BPE with a Metaspace pre-tokenizer);
* a LLaVA-1.5-style folder (CLIP + Mistral, one fixed-size image), a LLaVA-NeXT folder
  (CLIP + Mistral, anyres tiling) and a Mllama folder (tiled vision encoder,
  cross-attention), each with its processor, loadable by ``load_policy(path)``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def corpus(n: int = 300, seed: int = 0) -> list[str]:
    """JSON answers with thoughts, the shape policy outputs take."""
    rng = random.Random(seed)
    words = [
        "the",
        "current",
        "number",
        "is",
        "smaller",
        "than",
        "target",
        "so",
        "I",
        "move",
        "up",
        "down",
        "cards",
        "formula",
    ]
    lines = []
    for _ in range(n):
        thought = " ".join(rng.choice(words) for _ in range(rng.randint(2, 8)))
        answer = rng.choice(["+", "-", "hit", "stand", "(3+5)*2+8=24"])
        key = rng.choice(["action", "formula"])
        lines.append(
            json.dumps({"current number": rng.randint(0, 9), "thoughts": thought, key: answer})
        )
    lines.append("".join(chr(c) for c in range(32, 127)))
    return lines


def llama3_style_tokenizer(vocab_size: int = 700) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                pattern=__import__("tokenizers").Regex(LLAMA3_SPLIT), behavior="isolated"
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    specials = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|eot_id|>",
        "<|image|>",
        "<|python_tag|>",
        "<|finetune_right_pad_id|>",
    ]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
        additional_special_tokens=["<|image|>", "<|python_tag|>", "<|end_of_text|>"],
    )


def mistral_style_tokenizer(vocab_size: int = 700) -> PreTrainedTokenizerFast:
    """Sentencepiece-style BPE: Metaspace pieces, byte fallback for unseen characters."""
    trained = Tokenizer(models.BPE(unk_token="<unk>"))
    trained.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    specials = ["<unk>", "<s>", "</s>", "<image>", "[INST]", "[/INST]"]
    alphabet = sorted({ch for line in corpus() for ch in line} | {"▁"})
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    trained.train_from_iterator(corpus(), trainer=trainer)
    state = json.loads(trained.to_str())["model"]
    vocab = dict(state["vocab"])
    for byte in range(256):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tokenizer = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", byte_fallback=True))
    tokenizer.add_special_tokens(specials)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tokenizer.decoder = decoders.Sequence(
        [decoders.ByteFallback(), decoders.Metaspace(replacement="▁", prepend_scheme="first")]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<unk>",
        additional_special_tokens=["<image>", "[INST]", "[/INST]"],
    )


def _tiny_mistral_config(tokenizer):
    from transformers import MistralConfig

    return MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )


def build_llava_folder(folder: Path, image_size: int = 28, patch_size: int = 7) -> Path:
    """A random LLaVA-1.5-architecture model (CLIP ``image_size`` px / ``patch_size``, width
    32, Mistral 2 layers) with its processor: every image becomes one fixed patch grid."""
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = mistral_style_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=32,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=_tiny_mistral_config(tokenizer),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_llava_next_folder(folder: Path) -> Path:
    """A random LLaVA-NeXT (CLIP 28 px / patch 7, Mistral 2 layers) with its processor."""
    from transformers import (
        CLIPVisionConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
    )

    tokenizer = mistral_style_tokenizer()
    pinpoints = [[28, 28], [28, 56], [56, 28], [56, 56]]
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=28,
        patch_size=7,
        projection_dim=32,
    )
    config = LlavaNextConfig(
        vision_config=vision,
        text_config=_tiny_mistral_config(tokenizer),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )
    model = LlavaNextForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": 28},
        crop_size={"height": 28, "width": 28},
        image_grid_pinpoints=pinpoints,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=7,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_mllama_folder(folder: Path) -> Path:
    """A random Mllama (tiled vision encoder 28 px, 2 text layers, one cross-attention)."""
    from transformers import (
        MllamaConfig,
        MllamaForConditionalGeneration,
        MllamaImageProcessorPil,
        MllamaProcessor,
        MllamaTextConfig,
        MllamaVisionConfig,
    )

    tokenizer = llama3_style_tokenizer()
    vision = MllamaVisionConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_global_layers=1,
        attention_heads=2,
        intermediate_size=64,
        vision_output_dim=64,
        image_size=28,
        patch_size=7,
        max_num_tiles=2,
        intermediate_layers_indices=[0],
        supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]],
    )
    text = MllamaTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        cross_attention_layers=[1],
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = MllamaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<|image|>"),
    )
    model = MllamaForConditionalGeneration(config)
    # Cross-attention gates start at zero (tanh(0) = 0: the text ignores the image); open
    # them so the tests can see the image reach the logits.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "cross_attn_attn_gate" in name or "cross_attn_mlp_gate" in name:
                param.fill_(1.0)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    image_processor = MllamaImageProcessorPil(size={"height": 28, "width": 28}, max_image_tiles=2)
    processor = MllamaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
