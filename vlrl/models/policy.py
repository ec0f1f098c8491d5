"""VLMPolicy: one interface over LLaVA, LLaVA-NeXT and Mllama for PPO and SFT.

The policy owns its sampling loop (KV cache, left padding, explicit position ids) rather
than calling ``generate``: it records each sampled token's log-prob under exactly the
distribution :meth:`VLMPolicy.score` recomputes (logits over the sampling temperature, no
top-p and no suppressed tokens), so the PPO ratio of an unchanged policy is 1 up to float
rounding. Special tokens (the image placeholder above all: a sampled one breaks the next
forward pass) are never sampled.

Forward passes go through the base model (``model.model``) for the last hidden states and
apply the LM head only where logits are needed: the last position while sampling, the
output positions while scoring (or not at all for large vocabularies, where
``segment_logprob_from_hidden`` fuses the head into the log-prob reduction).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from vlrl.rollout import Generation, split_segments
from vlrl.triton_kernels import THOUGHT, segment_logprob, segment_logprob_from_hidden

FAMILIES = ("llava", "llava_next", "mllama")
POLICY_META_FILE = "vlrl_policy.json"
POLICY_WEIGHTS_FILE = "policy.safetensors"
MOF_CONFIG_FILE = "mof_dino_config.json"
# Above this vocabulary size scoring never materialises [B, T, V] logits.
FUSED_HEAD_MIN_VOCAB = 16384
# Processed images kept for re-scoring (LLaVA-NeXT at 336 px: 2 MB each in bf16).
PIXEL_CACHE_IMAGES = 1024
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class LoraSettings:
    """LoRA through peft. ``target_modules="all-linear"`` covers every linear layer except
    the LM head: vision tower, projector and language model (SPEC section 2)."""

    r: int = 128
    alpha: int = 256
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"

    def peft_config(self):
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            bias="none",
        )


@dataclass
class Scores:
    """What :meth:`VLMPolicy.score` returns for a batch of (prompt, output) pairs."""

    logprob: torch.Tensor
    token_logprobs: list[torch.Tensor]
    entropy: torch.Tensor
    values: torch.Tensor | None


@dataclass
class _Batch:
    """Left-padded token ids with their masks and the vision inputs of the batch."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    vision: dict
    lengths: list[int]


class VLMPolicy(nn.Module):
    """A vision-language policy: sampling, scoring, values and SFT loss on (image, prompt).

    Build it with :func:`vlrl.models.load_policy`. ``model`` is the transformers model,
    possibly wrapped by peft; ``value_head`` and ``mof`` are ours.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        *,
        family: str,
        image_size: int,
        processor=None,
        value_head: nn.Module | None = None,
        mof: nn.Module | None = None,
        meta: dict | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if family not in FAMILIES:
            raise ValueError(f"unknown model family {family!r}; expected one of {FAMILIES}")
        self.model = model
        self.value_head = value_head
        self.mof = mof
        self.tokenizer = tokenizer
        self.processor = processor
        self.family = family
        self.image_size = int(image_size)
        self.meta = dict(meta or {})
        hf = model.get_base_model() if hasattr(model, "get_base_model") else model
        # Not a submodule: the same modules are already registered under ``model``.
        object.__setattr__(self, "_hf", hf)
        config = hf.config
        self.image_token_id = getattr(config, "image_token_id", None)
        if self.image_token_id is None:
            self.image_token_id = getattr(config, "image_token_index", None)
        self.eos_token_ids = self._eos_ids()
        self.pad_token_id = (
            tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else min(self.eos_token_ids)
        )
        self._suppressed = self._suppressed_ids()
        self._generator_seed = int(seed)
        self._generator: torch.Generator | None = None
        self._image_token_counts: dict[tuple[int, ...], int] = {}
        self._pixel_cache: OrderedDict[bytes, dict] = OrderedDict()

    # ----------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        return next(self._hf.parameters()).device

    @property
    def vocab_size(self) -> int:
        return int(self._hf.get_output_embeddings().weight.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self._hf.config.get_text_config().hidden_size)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser updates (LoRA adapters + value head, or everything)."""
        return [param for param in self.parameters() if param.requires_grad]

    def enable_gradient_checkpointing(self) -> None:
        """Recompute activations in the backward pass (7B backbones: memory for batch size).

        Non-reentrant checkpointing, so frozen inputs (LoRA) still carry gradients through.
        """
        self._hf.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )

    # ----------------------------------------------------------------- token sets
    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        generation_config = getattr(self._hf, "generation_config", None)
        configured = getattr(generation_config, "eos_token_id", None)
        if isinstance(configured, int):
            ids.add(configured)
        elif configured:
            ids.update(int(token) for token in configured)
        if not ids:
            raise ValueError("the tokenizer has no EOS token: generation could never stop")
        return ids

    def _suppressed_ids(self) -> torch.Tensor:
        """Token ids never sampled: special tokens other than EOS, the image placeholder,
        and ids past the tokenizer (padded embedding rows)."""
        ids = set(int(token) for token in self.tokenizer.all_special_ids)
        ids.update(int(token) for token in getattr(self.tokenizer, "added_tokens_decoder", {}))
        if self.image_token_id is not None:
            ids.add(int(self.image_token_id))
        ids.update(range(len(self.tokenizer), self.vocab_size))
        ids -= self.eos_token_ids
        return torch.tensor(sorted(i for i in ids if i < self.vocab_size), dtype=torch.long)

    # ----------------------------------------------------------------- encoding
    def _pil(self, image: np.ndarray) -> Image.Image:
        array = np.asarray(image)
        if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 HxWx3 arrays, got dtype {array.dtype} shape {array.shape}"
            )
        return Image.fromarray(array)

    def _tiny_pixels(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """[N, 3, S, S] CLIP-normalised pixels at the vision tower's size."""
        size = self.image_size
        arrays = []
        for image in images:
            pil = self._pil(image)
            width, height = pil.size
            if (width, height) != (size, size):
                if width == height and width % size == 0:
                    pil = pil.reduce(width // size)  # box average: exact and fast
                else:
                    pil = pil.resize((size, size), Image.Resampling.BILINEAR)
            arrays.append(np.asarray(pil, dtype=np.float32))
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0
        mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        return ((pixels - mean) / std).to(self.device, self._hf.dtype)

    def _image_token_count(self) -> int:
        clip_tokens = int(self.meta["tiny"]["image_tokens"])
        return self.mof.tokens_per_image(clip_tokens) if self.mof is not None else clip_tokens

    def _chat_text(self, prompt: str, has_image: bool) -> str:
        """The prompt in the model's chat format (the processor's template when it has one)."""
        processor = self.processor
        if getattr(processor, "chat_template", None):
            content = ([{"type": "image"}] if has_image else []) + [
                {"type": "text", "text": prompt}
            ]
            return processor.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
            )
        image = (getattr(processor, "image_token", None) or "<image>") if has_image else ""
        if self.family == "mllama":
            return f"{image}{prompt}"
        return f"[INST] {image}\n{prompt} [/INST]"

    def encode_prompts(
        self, images: Sequence[np.ndarray | None], prompts: Sequence[str]
    ) -> list[torch.Tensor]:
        """Prompt token ids per sample, image placeholders expanded, ready for generation."""
        if len(images) != len(prompts):
            raise ValueError(f"got {len(images)} images for {len(prompts)} prompts")
        if not all(isinstance(prompt, str) for prompt in prompts):
            raise TypeError("prompts must be strings")
        if self.processor is None:
            tok = self.tokenizer
            bodies = tok(list(prompts), add_special_tokens=False)["input_ids"]
            image_ids = [self.image_token_id] * self._image_token_count()
            answer_id = tok.convert_tokens_to_ids(self.meta["answer_token"])
            return [
                torch.tensor(
                    [tok.bos_token_id]
                    + (image_ids if image is not None else [])
                    + body
                    + [answer_id],
                    dtype=torch.long,
                )
                for image, body in zip(images, bodies, strict=True)
            ]
        encoded = []
        for image, prompt in zip(images, prompts, strict=True):
            text = self._chat_text(prompt, image is not None)
            bos = self.tokenizer.bos_token
            kwargs = {"add_special_tokens": not (bos and text.startswith(bos))}
            if image is None:
                out = self.processor(text=[text], return_tensors="pt", **kwargs)
                encoded.append(out["input_ids"][0].to(torch.long))
            else:
                encoded.append(self._encode_with_image(text, image, kwargs))
        return encoded

    def _encode_with_image(self, text: str, image: np.ndarray, kwargs: dict) -> torch.Tensor:
        """Token ids with the image placeholder expanded as the processor expands it.

        How many placeholders an image needs depends only on its size, so the processor
        (which also preprocesses the pixels, the slow part) runs once per image shape for the
        LLaVA families; later prompts are tokenized directly and the single placeholder
        repeated that many times. With MoF the processor's run of placeholders (one per CLIP
        patch) becomes :meth:`MoFVision.tokens_per_image` of it (twice as many interleaved).
        """
        shape = tuple(np.shape(image))
        count = self._image_token_counts.get(shape)
        # Mllama's processor also rewrites the text around its placeholder (BOS after it):
        # it always runs there.
        if count is None or self.family == "mllama":
            out = self.processor(
                images=[self._pil(image)], text=[text], return_tensors="pt", **kwargs
            )
            ids = out["input_ids"][0].to(torch.long)
            if self.mof is not None:
                ids = self._mof_placeholders(ids)
            self._image_token_counts[shape] = int((ids == self.image_token_id).sum())
            return ids
        ids = self.tokenizer(text, return_tensors="pt", **kwargs)["input_ids"][0].to(torch.long)
        where = torch.nonzero(ids == self.image_token_id).flatten()
        if where.numel() != 1:
            raise ValueError(f"expected one image placeholder in the prompt, found {where.numel()}")
        at = int(where[0])
        placeholders = torch.full((count,), self.image_token_id, dtype=torch.long)
        return torch.cat([ids[:at], placeholders, ids[at + 1 :]])

    def _mof_placeholders(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids`` with its one run of CLIP image placeholders resized for the MoF tokens."""
        where = torch.nonzero(ids == self.image_token_id).flatten()
        if where.numel() == 0:
            raise ValueError("the processor put no image placeholder in the prompt")
        start, end = int(where[0]), int(where[-1]) + 1
        if end - start != where.numel():
            raise ValueError("MoF expects one contiguous run of image placeholders per prompt")
        count = self.mof.tokens_per_image(end - start)
        placeholders = torch.full((count,), self.image_token_id, dtype=torch.long)
        return torch.cat([ids[:start], placeholders, ids[end:]])

    def _mof_vision(self, pixels: torch.Tensor) -> dict:
        """Model keyword arguments carrying the merged MoF image features of ``pixels``:
        transformers' LLaVA scatters them into the placeholder positions as they are."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        features = self.mof.image_features(self._hf.model, pixels)
        return {
            "mm_encoder_outputs": {
                "image": BaseModelOutputWithPooling(pooler_output=list(features))
            }
        }

    def _vision_inputs(self, images: Sequence[np.ndarray | None], input_ids: torch.Tensor) -> dict:
        """Model keyword arguments for the images of a (left-padded) batch."""
        present = [image for image in images if image is not None]
        if not present:
            return {}
        device = self.device
        if self.processor is None:
            pixels = self._tiny_pixels(present)
            if self.mof is not None:
                return self._mof_vision(pixels)
            return {"pixel_values": pixels}
        processed = self._processed_images(present)
        dtype = self._hf.dtype
        if self.family == "mllama":
            if len(present) != len(images):
                raise ValueError("Mllama batches must have an image for every sample or none")
            aspect_ratio_mask = processed["aspect_ratio_mask"].to(device)
            return {
                "pixel_values": processed["pixel_values"].to(device, dtype),
                "aspect_ratio_ids": processed["aspect_ratio_ids"].to(device),
                "aspect_ratio_mask": aspect_ratio_mask,
                "cross_attention_mask": self._mllama_cross_mask(input_ids, aspect_ratio_mask),
            }
        if self.mof is not None:
            return self._mof_vision(processed["pixel_values"].to(device, dtype))
        vision = {"pixel_values": processed["pixel_values"].to(device, dtype)}
        if "image_sizes" in processed:
            vision["image_sizes"] = processed["image_sizes"].to(device)
        return vision

    def _processed_images(self, images: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """The image processor's batch outputs, each image processed once while cached.

        PPO scores every transition several times (old log-probs, each epoch), and the
        processors' PIL fallback costs tens of milliseconds per high-resolution image, so
        processed images are kept in a small LRU keyed by the pixels' hash.
        """
        per_image = []
        for image in images:
            array = np.ascontiguousarray(image)
            key = hashlib.blake2b(array.tobytes(), digest_size=16).digest() + bytes(
                str(array.shape), "ascii"
            )
            hit = self._pixel_cache.get(key)
            if hit is None:
                hit = dict(self.processor.image_processor([self._pil(array)], return_tensors="pt"))
                hit["pixel_values"] = hit["pixel_values"].to(self._hf.dtype)
                self._pixel_cache[key] = hit
                while len(self._pixel_cache) > PIXEL_CACHE_IMAGES:
                    self._pixel_cache.popitem(last=False)
            else:
                self._pixel_cache.move_to_end(key)
            per_image.append(hit)
        batch: dict[str, torch.Tensor] = {}
        for name in per_image[0]:
            tensors = [item[name] for item in per_image]
            if not isinstance(tensors[0], torch.Tensor):
                continue
            if name == "pixel_values" and tensors[0].dim() == 5 and self.family != "mllama":
                # LLaVA-NeXT: [1, patches, 3, H, W]; pad the patch count like the processor.
                most = max(t.shape[1] for t in tensors)
                tensors = [
                    F.pad(t, (0, 0, 0, 0, 0, 0, 0, most - t.shape[1])) if t.shape[1] < most else t
                    for t in tensors
                ]
            batch[name] = torch.cat(tensors, dim=0)
        return batch

    def _mllama_cross_mask(
        self, input_ids: torch.Tensor, aspect_ratio_mask: torch.Tensor
    ) -> torch.Tensor:
        """[B, L, 1, tiles]: every token from the image placeholder on sees the image tiles."""
        is_image = input_ids == self.image_token_id
        if not bool(is_image.any(dim=1).all()):
            raise ValueError("every Mllama prompt with an image needs its <|image|> token")
        after_image = is_image.long().cumsum(dim=1) > 0
        tiles = aspect_ratio_mask[:, :1, :].to(torch.long)  # [B, 1, tiles]
        return after_image[:, :, None, None].long() * tiles[:, None, :, :]

    def _pad(self, sequences: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-pad id sequences: (ids [B, L], attention mask [B, L])."""
        longest = max(int(seq.numel()) for seq in sequences)
        ids = torch.full((len(sequences), longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), longest), dtype=torch.long)
        for row, seq in enumerate(sequences):
            n = int(seq.numel())
            if n == 0:
                raise ValueError("empty token sequence")
            ids[row, longest - n :] = seq
            mask[row, longest - n :] = 1
        return ids.to(self.device), mask.to(self.device)

    def _batch(
        self, images: Sequence[np.ndarray | None], sequences: Sequence[torch.Tensor]
    ) -> _Batch:
        if len(images) != len(sequences):
            raise ValueError(f"got {len(images)} images for {len(sequences)} sequences")
        ids, mask = self._pad(sequences)
        position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
        return _Batch(
            ids, mask, position_ids, self._vision_inputs(images, ids), [len(s) for s in sequences]
        )

    # ----------------------------------------------------------------- forward
    def _backbone(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        vision: dict,
        cache=None,
        use_cache: bool = False,
    ):
        """Last hidden states [B, L, H] (after the final norm) and the KV cache."""
        out = self._hf.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            **vision,
        )
        return out.last_hidden_state, out.cache

    def _lm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        return self._hf.get_output_embeddings()(hidden)

    # ----------------------------------------------------------------- generation
    def _sampling_generator(self, seed: int | None) -> torch.Generator:
        if seed is not None:
            return torch.Generator(device=self.device).manual_seed(int(seed))
        if self._generator is None or self._generator.device != self.device:
            self._generator = torch.Generator(device=self.device).manual_seed(self._generator_seed)
        return self._generator

    @torch.no_grad()
    def generate(
        self,
        images: Sequence[np.ndarray | None],
        prompts: Sequence[str],
        *,
        temperature: float = 0.2,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        answer_key: str | Sequence[str] = "action",
        lam: float = 0.5,
        seed: int | None = None,
    ) -> Generation:
        """Sample one output per (image, prompt), batched, until EOS or ``max_new_tokens``.

        ``temperature <= 0`` samples greedily (log-probs then use temperature 1).
        ``answer_key`` (one, or one per sample) decides the thought/action split. ``seed``
        makes this call's sampling reproducible; without it the policy's own generator
        (seeded at load) advances. Runs in eval mode (no dropout), restoring the mode after.
        """
        if len(images) != len(prompts):
            raise ValueError(f"got {len(images)} images for {len(prompts)} prompts")
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
        keys = [answer_key] * len(prompts) if isinstance(answer_key, str) else list(answer_key)
        if len(keys) != len(prompts):
            raise ValueError("answer_key needs one entry per prompt")
        if not prompts:
            raise ValueError("generate needs at least one prompt")
        was_training = self.training
        self.eval()
        try:
            return self._generate(
                images, prompts, temperature, top_p, max_new_tokens, keys, lam, seed
            )
        finally:
            self.train(was_training)

    def _generate(self, images, prompts, temperature, top_p, max_new_tokens, keys, lam, seed):
        generator = self._sampling_generator(seed)
        greedy = temperature <= 0
        scale = 1.0 if greedy else float(temperature)
        prompt_ids = self.encode_prompts(images, prompts)
        batch = self._batch(images, prompt_ids)
        hidden, cache = self._backbone(
            batch.input_ids,
            batch.attention_mask,
            batch.position_ids,
            batch.vision,
            use_cache=True,
        )
        last_hidden = hidden[:, -1]
        values = self.value_head(last_hidden) if self.value_head is not None else None
        decode_vision = {}
        if "cross_attention_mask" in batch.vision:
            decode_vision["cross_attention_mask"] = batch.vision["cross_attention_mask"][:, -1:]

        size = len(prompts)
        device = self.device
        suppressed = self._suppressed.to(device)
        eos = torch.tensor(sorted(self.eos_token_ids), device=device)
        finished = torch.zeros(size, dtype=torch.bool, device=device)
        tokens, logps = [], []
        attention_mask = batch.attention_mask
        positions = batch.position_ids[:, -1:]
        for _ in range(max_new_tokens):
            logits = self._lm_head(last_hidden).float() / scale
            token_logp_all = torch.log_softmax(logits, dim=-1)
            if suppressed.numel():
                logits = logits.index_fill(1, suppressed, float("-inf"))
            if greedy:
                next_tokens = logits.argmax(dim=-1)
            else:
                probs = torch.softmax(logits, dim=-1)
                if top_p < 1.0:
                    probs = _top_p_filter(probs, top_p)
                next_tokens = _sample(probs, generator)
            next_tokens = torch.where(
                finished, torch.full_like(next_tokens, self.pad_token_id), next_tokens
            )
            tokens.append(next_tokens)
            logps.append(token_logp_all.gather(1, next_tokens[:, None]).squeeze(1))
            finished = finished | torch.isin(next_tokens, eos)
            if bool(finished.all()):
                break
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(size, 1)], dim=1)
            positions = positions + 1
            hidden, cache = self._backbone(
                next_tokens[:, None],
                attention_mask,
                positions,
                decode_vision,
                cache=cache,
                use_cache=True,
            )
            last_hidden = hidden[:, -1]

        sampled = torch.stack(tokens, dim=1).cpu()
        sampled_logps = torch.stack(logps, dim=1).cpu()
        output_ids, token_logprobs, segment_ids, texts = [], [], [], []
        eos_cpu = eos.cpu()
        for row in range(size):
            row_tokens = sampled[row]
            stops = torch.nonzero(torch.isin(row_tokens, eos_cpu)).flatten()
            length = int(stops[0]) + 1 if stops.numel() else row_tokens.numel()
            ids = row_tokens[:length].clone()
            output_ids.append(ids)
            token_logprobs.append(sampled_logps[row, :length].clone())
            segment_ids.append(split_segments(self.tokenizer, ids.tolist(), keys[row]))
            texts.append(self.tokenizer.decode(ids.tolist(), skip_special_tokens=True))
        weights = [torch.where(seg == THOUGHT, lam, 1.0) for seg in segment_ids]
        logprob = torch.stack(
            [(lp * w).sum() for lp, w in zip(token_logprobs, weights, strict=True)]
        )
        return Generation(
            texts=texts,
            prompt_ids=[ids.cpu() for ids in prompt_ids],
            output_ids=output_ids,
            segment_ids=segment_ids,
            token_logprobs=token_logprobs,
            logprob=logprob,
            values=values.detach().cpu() if values is not None else None,
        )

    # ----------------------------------------------------------------- scoring
    def _output_hidden(
        self, hidden: torch.Tensor, batch: _Batch, prompt_lens: list[int], output_lens: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states predicting each output token ([B, T, H], zero-padded on the right)
        and the hidden state of each last prompt token ([B, H])."""
        size, width = hidden.shape[0], hidden.shape[1]
        longest = max(output_lens)
        rows = torch.arange(size, device=hidden.device)
        starts = torch.tensor(
            [width - length for length in batch.lengths], device=hidden.device
        ) + torch.tensor(prompt_lens, device=hidden.device)
        # Output token j of a row sits at starts + j and is predicted one position earlier.
        offsets = torch.arange(longest, device=hidden.device)
        index = (starts[:, None] - 1 + offsets[None, :]).clamp(max=width - 1)
        valid = offsets[None, :] < torch.tensor(output_lens, device=hidden.device)[:, None]
        gathered = hidden[rows[:, None], index] * valid[..., None].to(hidden.dtype)
        return gathered, hidden[rows, starts - 1]

    def score(
        self,
        images: Sequence[np.ndarray | None],
        prompt_ids: Sequence[torch.Tensor],
        output_ids: Sequence[torch.Tensor],
        segment_ids: Sequence[torch.Tensor],
        *,
        lam: float,
        temperature: float,
    ) -> Scores:
        """Differentiable log-probs of given outputs, values and entropy in one forward pass.

        ``logprob[b] = lam * sum(thought token log-probs) + sum(action token log-probs)``
        with the logits divided by ``temperature`` (the sampling temperature; <= 0 means 1,
        as for greedy sampling). Runs in the module's current mode (train/eval).
        """
        size = len(prompt_ids)
        if not (len(images) == size == len(output_ids) == len(segment_ids)):
            raise ValueError("images, prompt_ids, output_ids and segment_ids differ in length")
        output_lens = [int(ids.numel()) for ids in output_ids]
        if min(output_lens, default=0) < 1:
            raise ValueError("every output needs at least one token")
        for ids, segs in zip(output_ids, segment_ids, strict=True):
            if ids.shape != segs.shape:
                raise ValueError("output_ids and segment_ids shapes differ")
        temperature = float(temperature) if temperature > 0 else 1.0
        sequences = [
            torch.cat([p.to(torch.long).cpu(), o.to(torch.long).cpu()])
            for p, o in zip(prompt_ids, output_ids, strict=True)
        ]
        batch = self._batch(images, sequences)
        hidden, _ = self._backbone(
            batch.input_ids, batch.attention_mask, batch.position_ids, batch.vision
        )
        prompt_lens = [int(ids.numel()) for ids in prompt_ids]
        out_hidden, prompt_last = self._output_hidden(hidden, batch, prompt_lens, output_lens)
        longest = max(output_lens)
        targets = torch.zeros((size, longest), dtype=torch.long)
        segments = torch.zeros((size, longest), dtype=torch.int8)
        for row, (ids, segs) in enumerate(zip(output_ids, segment_ids, strict=True)):
            targets[row, : ids.numel()] = ids.cpu()
            segments[row, : segs.numel()] = segs.cpu().to(torch.int8)
        targets, segments = targets.to(self.device), segments.to(self.device)
        head = self._hf.get_output_embeddings()
        if (
            self.vocab_size >= FUSED_HEAD_MIN_VOCAB
            and type(head) is nn.Linear
            and head.bias is None
        ):
            result = segment_logprob_from_hidden(
                out_hidden,
                head.weight,
                targets,
                segments,
                lam,
                temperature,
                return_token_logprobs=True,
                return_entropy=True,
            )
        else:
            result = segment_logprob(
                self._lm_head(out_hidden),
                targets,
                segments,
                lam,
                temperature,
                return_token_logprobs=True,
                return_entropy=True,
            )
        counted = (segments != 0).sum(dim=1).clamp(min=1)
        entropy = result.entropy.sum(dim=1) / counted
        values = self.value_head(prompt_last) if self.value_head is not None else None
        return Scores(
            logprob=result.logprob,
            token_logprobs=[result.token_logprobs[row, :n] for row, n in enumerate(output_lens)],
            entropy=entropy,
            values=values,
        )

    def values(self, images: Sequence[np.ndarray | None], prompts: Sequence[str]) -> torch.Tensor:
        """[B] value-head estimates at the last prompt token (differentiable)."""
        if self.value_head is None:
            raise RuntimeError("this policy was loaded with value_head=False")
        batch = self._batch(images, self.encode_prompts(images, prompts))
        hidden, _ = self._backbone(
            batch.input_ids, batch.attention_mask, batch.position_ids, batch.vision
        )
        return self.value_head(hidden[:, -1])

    def encode_response(self, response: str) -> torch.Tensor:
        """Token ids of an SFT target: the response followed by EOS."""
        ids = self.tokenizer(response, add_special_tokens=False)["input_ids"]
        return torch.tensor(ids + [min(self.eos_token_ids)], dtype=torch.long)

    def sft_loss(
        self,
        images: Sequence[np.ndarray | None],
        prompts: Sequence[str],
        responses: Sequence[str],
    ) -> torch.Tensor:
        """Mean token cross-entropy over the response tokens (EOS included), prompt masked."""
        if not (len(images) == len(prompts) == len(responses)):
            raise ValueError("images, prompts and responses differ in length")
        prompt_ids = self.encode_prompts(images, prompts)
        response_ids = [self.encode_response(text) for text in responses]
        batch = self._batch(
            images, [torch.cat([p, r]) for p, r in zip(prompt_ids, response_ids, strict=True)]
        )
        hidden, _ = self._backbone(
            batch.input_ids, batch.attention_mask, batch.position_ids, batch.vision
        )
        output_lens = [int(ids.numel()) for ids in response_ids]
        out_hidden, _ = self._output_hidden(
            hidden, batch, [int(ids.numel()) for ids in prompt_ids], output_lens
        )
        targets = torch.full((len(prompts), max(output_lens)), -100, dtype=torch.long)
        for row, ids in enumerate(response_ids):
            targets[row, : ids.numel()] = ids
        logits = self._lm_head(out_hidden).float()
        return F.cross_entropy(
            logits.flatten(0, 1), targets.to(self.device).flatten(), ignore_index=-100
        )

    # ----------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write the policy to a folder that :func:`vlrl.models.load_policy` restores exactly.

        A policy built from a config (``tiny``) is saved whole; one loaded from a model
        folder saves only what differs from that folder (its trainable tensors, the value
        head, the MoF adapter and any MoF tower not read from a DINOv2 folder) plus the
        folders' paths.
        """
        from safetensors.torch import save_file

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        base = self.meta.get("base")
        state = self.state_dict()
        if base is not None:
            keep = {name for name, param in self.named_parameters() if param.requires_grad}
            ours = ("value_head.", "mof.")
            if self.mof is not None and self.mof.dino_folder is not None:
                # Frozen DINOv2 weights reload from their folder, like the base model's.
                ours = ("value_head.", "mof.adapter.")
            state = {
                name: tensor
                for name, tensor in state.items()
                if name in keep or name.startswith(ours)
            }
        else:
            self._hf.config.save_pretrained(folder)
            self._hf.generation_config.save_pretrained(folder)
        save_file(
            {name: tensor.detach().contiguous().cpu().clone() for name, tensor in state.items()},
            folder / POLICY_WEIGHTS_FILE,
        )
        self.tokenizer.save_pretrained(folder)
        if self.processor is not None:
            self.processor.save_pretrained(folder)
        if self.mof is not None:
            (folder / MOF_CONFIG_FILE).write_text(self.mof.dino.config.to_json_string())
        meta = dict(self.meta, family=self.family, image_size=self.image_size)
        (folder / POLICY_META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return folder


def _sample(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One token per row drawn from ``probs`` (rows need not be normalised).

    Inverse-CDF sampling: one uniform number per row instead of one per vocabulary entry
    (``torch.multinomial`` and the exponential race cost milliseconds per step on CPU). A
    zero-probability token never starts a CDF step, so it is never drawn.
    """
    cdf = probs.cumsum(dim=-1)
    draw = torch.rand((probs.shape[0], 1), generator=generator, device=probs.device)
    tokens = torch.searchsorted(cdf, draw * cdf[:, -1:], right=True)
    return tokens.squeeze(1).clamp(max=probs.shape[-1] - 1)


def _top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the tail of each row beyond the smallest set whose mass reaches ``top_p``."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs)


def lora_meta(lora: LoraSettings | None) -> dict | None:
    """JSON form of LoRA settings for the saved policy metadata."""
    return asdict(lora) if lora is not None else None
