"""LLaVA-NeXT and Mllama folders (tiny random models built from configs) through load_policy."""

from __future__ import annotations

import pytest
import torch
from builders import build_llava_next_folder, build_mllama_folder
from policy_scoring import (
    assert_rows_score_as_batched,
    assert_scores_match_generation,
    random_images,
    rescore,
)

from vlrl.models import LoraSettings, load_policy

BUILDERS = {"llava_next": build_llava_next_folder, "mllama": build_mllama_folder}
PROMPTS = ["move the current number to the target", "cards: 3 5 8 K", "x"]


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def folder(request, tmp_path_factory):
    torch.manual_seed(0)
    return request.param, BUILDERS[request.param](tmp_path_factory.mktemp(request.param))


def test_loads_family_and_generates_batched_with_exact_logprobs(folder):
    family, path = folder
    policy = load_policy(str(path), value_head_hidden=(32, 16))
    assert policy.family == family and policy.image_size == 28
    images = random_images(3)
    out = policy.generate(images, PROMPTS, temperature=0.8, max_new_tokens=10, seed=0)
    assert len(out.texts) == 3 and all(1 <= ids.numel() <= 10 for ids in out.output_ids)
    # The prompts differ in length, so the batch really was padded.
    assert len({ids.numel() for ids in out.prompt_ids}) > 1
    image_id = policy.image_token_id
    assert all(int((ids == image_id).sum()) >= 1 for ids in out.prompt_ids)
    # Prompts after the first reuse the placeholder count: same ids as the processor's.
    for image, prompt, ids in zip(images, PROMPTS, out.prompt_ids, strict=True):
        text = policy._chat_text(prompt, True)
        direct = policy.processor(images=[image], text=[text], return_tensors="pt")["input_ids"][0]
        assert torch.equal(direct, ids)
    scores = rescore(policy, images, out, temperature=0.8)
    assert_scores_match_generation(scores, out, lam=0.5)
    torch.testing.assert_close(scores.values.detach(), out.values, atol=1e-5, rtol=1e-5)
    # Processed images are cached by content and batch like the processor's own output.
    assert len(policy._pixel_cache) == 3
    # (Mllama's processor takes a list of images per sample.)
    nested = [[image] for image in images] if family == "mllama" else images
    direct = policy.processor.image_processor(nested, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(policy._processed_images(images)["pixel_values"], direct)
    # The image matters: other pixels, other log-probs.
    other = rescore(policy, random_images(3, seed=9), out, temperature=0.8)
    assert not torch.allclose(other.logprob, scores.logprob)


def test_lora_value_head_and_reload(folder, tmp_path):
    family, path = folder
    policy = load_policy(str(path), lora=LoraSettings(r=2, alpha=4), value_head_hidden=(32, 16))
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert all("lora_" in n or n.startswith("value_head.") for n in trainable)
    vision_part = "vision_tower" if family == "llava_next" else "vision_model"
    assert any(vision_part in n for n in trainable)
    images = random_images(2)
    out = policy.generate(images, PROMPTS[:2], temperature=1.0, max_new_tokens=6, seed=1)
    scores = rescore(policy, images, out)
    (scores.logprob.sum() + scores.values.sum()).backward()
    assert all(p.grad is not None for p in policy.value_head.parameters())
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0
        for n, p in policy.named_parameters()
        if "lora_A" in n or "lora_B" in n
    )
    with torch.no_grad():
        for param in policy.trainable_parameters():
            param.add_(0.01 * torch.randn_like(param))
    policy.save(tmp_path / "saved")
    # Only what differs from the base folder is written.
    weights = (tmp_path / "saved" / "policy.safetensors").stat().st_size
    assert weights < (path / "model.safetensors").stat().st_size
    reloaded = load_policy(str(tmp_path / "saved"))
    first = policy.generate(images, PROMPTS[:2], temperature=1.0, max_new_tokens=6, seed=2)
    second = reloaded.generate(images, PROMPTS[:2], temperature=1.0, max_new_tokens=6, seed=2)
    assert first.texts == second.texts
    assert torch.equal(first.values, second.values)
    for x, y in zip(first.token_logprobs, second.token_logprobs, strict=True):
        assert torch.equal(x, y)


def test_sft_loss_is_finite_and_trains(folder):
    _, path = folder
    policy = load_policy(str(path), value_head=False)
    assert policy.value_head is None
    loss = policy.sft_loss(random_images(2), PROMPTS[:2], ['{"action": "+"}', '{"action": "-"}'])
    assert torch.isfinite(loss)
    loss.backward()
    assert policy.model.get_output_embeddings().weight.grad.abs().sum() > 0


def test_missing_and_foreign_folders_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="llava-v1.6-mistral-7b"):
        load_policy(str(tmp_path / "llava-v1.6-mistral-7b"))
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="bert"):
        load_policy(str(tmp_path / "bert"))


def test_policy_from_model_saves_whole_and_reloads(folder, tmp_path):
    import transformers
    from transformers import AutoProcessor

    from vlrl.models import policy_from_model

    family, path = folder
    class_name = {
        "llava_next": "LlavaNextForConditionalGeneration",
        "mllama": "MllamaForConditionalGeneration",
    }
    hf_model = getattr(transformers, class_name[family]).from_pretrained(path)
    policy = policy_from_model(
        hf_model, AutoProcessor.from_pretrained(path), value_head_hidden=(32, 16), seed=3
    )
    policy.save(tmp_path / "whole")
    reloaded = load_policy(str(tmp_path / "whole"))
    assert reloaded.family == family and reloaded.meta["base"] is None
    images = random_images(2)
    first = policy.generate(images, PROMPTS[:2], temperature=1.0, max_new_tokens=6, seed=2)
    second = reloaded.generate(images, PROMPTS[:2], temperature=1.0, max_new_tokens=6, seed=2)
    assert first.texts == second.texts and torch.equal(first.values, second.values)


def test_rows_are_independent_of_their_batch(folder):
    """A row scores the same alone as in a padded batch with other images and lengths."""
    _, path = folder
    policy = load_policy(str(path), value_head_hidden=(32, 16))
    images = random_images(3, seed=4)
    out = policy.generate(images, PROMPTS, temperature=1.0, max_new_tokens=6, seed=3)
    batch = rescore(policy, images, out)
    assert_rows_score_as_batched(policy, images, out, batch)
