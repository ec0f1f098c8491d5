"""The tiny policy's BPE tokenizer: coverage, digit and key boundaries, compression, caching."""

from __future__ import annotations

import gymnasium as gym
import pytest
import vlrl.envs  # noqa: F401  (registers the env ids)

from vlrl.models import tokenizer as tok_module
from vlrl.models.tokenizer import (
    env_corpus,
    fallback_corpus,
    tiny_tokenizer,
    train_tokenizer,
    wrap_tokenizer,
)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.mark.parametrize(
    "text",
    [
        "plain ascii 123",
        "naïve ✓ 日本語 🂡",
        "tabs\tand\nnewlines\r\n",
        '{"formula": "(3+5)*2=16"}',
        "",
    ],
)
def test_every_character_round_trips(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_digits_split_and_keys_start_tokens(tokenizer):
    ids = tokenizer('{"current number": 345, "action": "+"}', add_special_tokens=False)["input_ids"]
    pieces = [tokenizer.decode([i]) for i in ids]
    assert {"3", "4", "5"} <= set(pieces)
    assert all(not (any(c.isdigit() for c in p) and len(p) > 1) for p in pieces)
    assert any(p.startswith('"action') for p in pieces)


def test_env_prompts_compress(tokenizer):
    env = gym.make("vlrl/NumberLine-v0")
    env.reset(seed=0)
    prompt = env.unwrapped.prompt(cot=True)
    n_tokens = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    # The fixed template collapses into a few tokens; only the state varies.
    assert n_tokens < len(prompt) / 10
    env.close()


def test_training_is_deterministic_and_cached(tmp_path, monkeypatch):
    corpus = fallback_corpus()
    first = train_tokenizer(corpus, vocab_size=300).to_str()
    assert first == train_tokenizer(corpus, vocab_size=300).to_str()
    monkeypatch.setenv("VLRL_CACHE", str(tmp_path))
    calls = []
    real_train = tok_module.train_tokenizer
    monkeypatch.setattr(
        tok_module, "train_tokenizer", lambda *a, **k: calls.append(1) or real_train(*a, **k)
    )
    fresh = tiny_tokenizer(vocab_size=500)
    cached = tiny_tokenizer(vocab_size=500)
    assert len(calls) == 1  # the second call loads the cached file
    assert list((tmp_path / "tokenizers").glob("*/tokenizer.json"))
    assert fresh.get_vocab() == cached.get_vocab()
    assert len(env_corpus(states_per_env=2)) > 0  # the envs' text is part of the corpus


def test_special_tokens_are_atomic():
    tokenizer = wrap_tokenizer(train_tokenizer(fallback_corpus(), vocab_size=300))
    ids = tokenizer("<image><image><|answer|>", add_special_tokens=False)["input_ids"]
    assert ids == [tokenizer.convert_tokens_to_ids(t) for t in ("<image>", "<image>", "<|answer|>")]
