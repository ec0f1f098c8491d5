"""Thought/action split of generated tokens (SPEC section 2) across tokenizer styles."""

from __future__ import annotations

import random

import pytest
import torch
from builders import llama3_style_tokenizer, mistral_style_tokenizer

from vlrl.models.tokenizer import tiny_tokenizer
from vlrl.rollout import (
    ACTION,
    THOUGHT,
    segment_ids_for,
    split_segments,
    token_char_offsets,
)


def test_split_at_last_key_and_fallback_rule():
    text = 'ab"action"cd"action": "+"'
    offsets = [(0, 2), (2, 10), (10, 12), (12, 20), (20, 25)]
    assert segment_ids_for(text, offsets, "action") == [1, 1, 1, 2, 2]
    # The token that contains the key's opening quote starts the action.
    assert segment_ids_for('x "formula": 1', [(0, 2), (2, 14)], "formula") == [1, 2]
    assert segment_ids_for('x "formula": 1', [(0, 3), (3, 14)], "formula") == [2, 2]
    # No key: the last four tokens are the action; fewer than four: all of them.
    assert segment_ids_for("abcdef", [(i, i + 1) for i in range(6)], "action") == [1, 1] + [2] * 4
    assert segment_ids_for("ab", [(0, 1), (1, 2)], "action") == [2, 2]
    # An EOS token adds no text and, coming last, belongs to the action.
    assert segment_ids_for('"action"', [(0, 8), (8, 8)], "action") == [2, 2]
    # The key must be quoted: a bare word is not the key.
    assert segment_ids_for("action a b c d", [(0, 7)] + [(7, 9)] * 4, "action") == [1] + [2] * 4
    with pytest.raises(ValueError):
        segment_ids_for("x", [(0, 1)], "")


TOKENIZERS = {
    "tiny": tiny_tokenizer,
    "llama3_bytelevel": llama3_style_tokenizer,
    "mistral_metaspace": mistral_style_tokenizer,
}


def _random_output(rng: random.Random, key: str) -> str:
    words = ["current", "number", "is", "smaller", "so", "move", "é", "24", "(3+5)*2"]
    thought = " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))
    if rng.random() < 0.3:  # an earlier mention of the key, which must not start the action
        thought += f' "{key}" maybe'
    return f'{{"thoughts": "{thought}", "{key}": "{rng.choice(["+", "-", "1+2*3"])}"}}'


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
@pytest.mark.parametrize("key", ["action", "formula"])
def test_split_matches_tokenizer_offsets(name, key):
    """The split from decoded prefixes equals the one from the tokenizer's own offsets."""
    tokenizer = TOKENIZERS[name]()
    rng = random.Random(hash((name, key)) % 1000)
    for _ in range(25):
        text = _random_output(rng, key)
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = encoding["input_ids"] + [tokenizer.eos_token_id]
        decoded, offsets = token_char_offsets(tokenizer, ids)
        assert decoded.strip() == text.strip()
        position = decoded.rfind(f'"{key}"')
        assert position >= 0
        # Oracle: the first token whose own offset span reaches past the key's start in
        # the original text (offsets shift by the decoded/original difference, if any).
        shift = len(text) - len(decoded)
        expected = next(
            i for i, (_, end) in enumerate(encoding["offset_mapping"]) if end > position + shift
        )
        segments = split_segments(tokenizer, ids, key)
        assert segments.dtype == torch.int8
        assert segments.tolist() == [THOUGHT] * expected + [ACTION] * (len(ids) - expected)
        action_text = tokenizer.decode(ids[expected:], skip_special_tokens=True)
        assert f'{key}"' in action_text
        assert decoded[: offsets[expected][0]].count(f'"{key}"') == text.count(f'"{key}"') - 1


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_offsets_cover_text_without_gaps(name):
    tokenizer = TOKENIZERS[name]()
    text = 'naïve "action": "+" ✓ 12'
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    decoded, offsets = token_char_offsets(tokenizer, ids)
    assert offsets[0][0] == 0 and offsets[-1][1] == len(decoded)
    assert all(a[1] == b[0] for a, b in zip(offsets, offsets[1:], strict=False))
    assert all(start <= end for start, end in offsets)
