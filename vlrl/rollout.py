"""Generation results and the thought/action split of generated tokens (SPEC section 2).

The split rule: the action part of an output starts at the last occurrence of the answer
key (``"action"``, or ``"formula"`` for GeneralPoints, opening quote included) and runs to
the end of generation; every generated token before it is thought. When the key is absent
the last four generated tokens count as the action. The key is searched in the decoded
text and mapped back to tokens through per-token character offsets, so the rule does not
depend on how a tokenizer happens to cut the key.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vlrl.triton_kernels import ACTION, THOUGHT

FALLBACK_ACTION_TOKENS = 4


@dataclass
class Generation:
    """One batch of sampled outputs and everything PPO needs to score them again.

    ``token_logprobs`` are the generation-time log-probs of the sampled tokens under the
    temperature-scaled distribution (before top-p and before suppressing special tokens,
    which is what :meth:`VLMPolicy.score` recomputes). ``logprob`` is
    ``lam * sum(thought) + sum(action)`` at the ``lam`` given to ``generate``.
    """

    texts: list[str]
    prompt_ids: list[torch.Tensor]
    output_ids: list[torch.Tensor]
    segment_ids: list[torch.Tensor]
    token_logprobs: list[torch.Tensor]
    logprob: torch.Tensor
    values: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_generated_tokens(self) -> int:
        """Total output tokens in the batch (EOS included)."""
        return sum(int(ids.numel()) for ids in self.output_ids)


def answer_key_pattern(answer_key: str) -> str:
    """The text searched for: the key in double quotes (``action`` -> ``"action"``)."""
    key = answer_key.strip('"')
    if not key:
        raise ValueError("answer_key must be a non-empty key name such as 'action'")
    return f'"{key}"'


def segment_ids_for(
    text: str, offsets: Sequence[tuple[int, int]], answer_key: str = "action"
) -> list[int]:
    """Segment id per output token: 1 thought, 2 action.

    ``offsets[i]`` is token i's ``(start, end)`` character span in ``text`` (a token that
    adds no text, such as EOS, has ``start == end``). The token whose span contains the
    start of the last quoted ``answer_key`` and every later token are action; with no key
    in ``text`` the last four tokens are.
    """
    n_tokens = len(offsets)
    position = text.rfind(answer_key_pattern(answer_key))
    if position < 0:
        first_action = max(0, n_tokens - FALLBACK_ACTION_TOKENS)
    else:
        first_action = n_tokens
        for index, (_, end) in enumerate(offsets):
            if end > position:
                first_action = index
                break
    return [THOUGHT] * first_action + [ACTION] * (n_tokens - first_action)


def token_char_offsets(tokenizer, token_ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """Decoded text of ``token_ids`` and each token's character span in it.

    Works for any tokenizer (byte-level BPE, sentencepiece/Metaspace, WordPiece) by
    decoding every prefix: a token's span ends where the longest prefix of the full text
    that its prefix decodes to ends. Tokens that split a multi-byte character get an empty
    span and the character goes to the token that completes it.
    """
    ids = [int(token) for token in token_ids]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # the Rust decoder directly: no per-id Python conversion
        text = backend.decode(ids, skip_special_tokens=True)
        prefixes = backend.decode_batch(
            [ids[: i + 1] for i in range(len(ids))], skip_special_tokens=True
        )
    else:
        text = tokenizer.decode(ids, skip_special_tokens=True)
        prefixes = tokenizer.batch_decode(
            [ids[: i + 1] for i in range(len(ids))], skip_special_tokens=True
        )
    offsets: list[tuple[int, int]] = []
    previous_end = 0
    for prefix in prefixes:
        # A prefix that ends inside a character decodes to a replacement char: fall back
        # to the common prefix, so that token gets an empty span.
        fits = text.startswith(prefix)
        end = len(prefix) if fits else len(os.path.commonprefix([prefix, text]))
        end = max(end, previous_end)
        offsets.append((previous_end, end))
        previous_end = end
    return text, offsets


def split_segments(tokenizer, token_ids: Sequence[int], answer_key: str = "action") -> torch.Tensor:
    """int8 segment ids for one generated token sequence (see :func:`segment_ids_for`)."""
    text, offsets = token_char_offsets(tokenizer, token_ids)
    return torch.tensor(segment_ids_for(text, offsets, answer_key), dtype=torch.int8)
