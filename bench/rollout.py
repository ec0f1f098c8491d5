"""Rollout throughput: NumberLine end to end (render, prompt, generate, parse, step).

Each round: the vector env's images and prompts h(o) -> ``policy.generate`` (batched,
KV cache, left padding) -> f (``parse_actions``) -> ``step``. Reported per batch size:
generated tokens per second, env steps per second, and (GPU) peak memory, side by side
with batch-1 generation, the way the reference code samples (one (image, prompt) at a
time): ratio columns are tokens/s over our batch-1 row and over transformers' ``generate``
at batch 1 (the reference code's sampler).

* CPU (default): the tiny policy (``load_policy("tiny")``), batch sizes 1, 8, 32, plus a
  batch-1 row through transformers' ``generate`` (the reference code's sampler).
* ``--gpu``: a random-weight model of the llava-v1.6-mistral-7b architecture in bf16
  (CLIP ViT-L/14-336 + Mistral-7B, anyres tiling; no weights needed for throughput),
  batch sizes 1, 8, 32, 128. Goal: >= 10x tokens/s at batch 32 over batch 1.

An untrained model rarely samples EOS, so outputs run to ``--max-new-tokens``: the
figures are per generated token, with the output length fixed by that flag.

Each row is the fastest of ``--repeats`` runs (the CPU is shared). Prints a table and one
JSON line. Usage: ``python bench/rollout.py [--gpu] [--quick] [--threads N]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from vlrl.envs.vector import CardsVectorEnv

from vlrl.models import load_policy, policy_from_model


def run_rollout(policy, batch: int, rounds: int, max_new_tokens: int, temperature: float) -> dict:
    """``rounds`` env steps of ``batch`` NumberLine games; returns the timing row."""
    env = CardsVectorEnv("NumberLine", batch, seed=0, image_size=336)
    observations, _ = env.reset(seed=0)
    tokens = 0
    fallbacks = 0
    sync = torch.cuda.synchronize if policy.device.type == "cuda" else (lambda: None)
    if policy.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    start = time.perf_counter()
    for _ in range(rounds):
        images = list(observations["image"])
        out = policy.generate(
            images, env.prompts(cot=True), temperature=temperature, max_new_tokens=max_new_tokens
        )
        actions, used_fallback = env.parse_actions(out.texts)
        observations, *_ = env.step(actions)
        tokens += out.num_generated_tokens
        fallbacks += int(used_fallback.sum())
    sync()
    seconds = time.perf_counter() - start
    env.close()
    row = {
        "sampler": "vlrl",
        "batch": batch,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "env_steps_per_s": batch * rounds / seconds,
        "tokens_per_output": tokens / (batch * rounds),
        "fallback_share": fallbacks / (batch * rounds),
    }
    if policy.device.type == "cuda":
        row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return row


def run_hf_generate_batch1(policy, rounds: int, max_new_tokens: int, temperature: float) -> dict:
    """Batch-1 rollout through transformers' ``generate`` with per-step scores (the
    reference code's sampler), logprobs taken from the returned scores."""
    env = CardsVectorEnv("NumberLine", 1, seed=0, image_size=336)
    observations, _ = env.reset(seed=0)
    tokens = 0
    hf = policy._hf
    start = time.perf_counter()
    for _ in range(rounds):
        images = list(observations["image"])
        prompt_ids = policy.encode_prompts(images, env.prompts(cot=True))
        ids = prompt_ids[0][None].to(policy.device)
        vision = policy._vision_inputs(images, ids)
        with torch.no_grad():
            result = hf.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                temperature=temperature,
                max_new_tokens=max_new_tokens,
                output_scores=True,
                return_dict_in_generate=True,
                pad_token_id=policy.pad_token_id,
                **vision,
            )
        generated = result.sequences[0, ids.shape[1] :]
        text = policy.tokenizer.decode(generated, skip_special_tokens=True)
        actions, _ = env.parse_actions([text])
        observations, *_ = env.step(actions)
        tokens += int(generated.numel())
    seconds = time.perf_counter() - start
    env.close()
    return {
        "sampler": "hf_generate",
        "batch": 1,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "env_steps_per_s": rounds / seconds,
        "tokens_per_output": tokens / rounds,
    }


def llava_next_7b_random(device: str, shrink: bool = False):
    """llava-v1.6-mistral-7b's architecture with random bf16 weights and a local processor.

    ``shrink`` keeps everything but the widths and depths (same 336 px anyres processor,
    patch 14, vocabulary, feature layer): a CPU dry run of the GPU code path.
    """
    from transformers import (
        CLIPVisionConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
        MistralConfig,
    )

    from vlrl.models.tokenizer import IMAGE_TOKEN, tiny_tokenizer

    try:  # torchvision's processor is ~10x faster than the PIL fallback (64 ms per image)
        import torchvision  # noqa: F401
        from transformers import LlavaNextImageProcessor as image_processor_class
    except ImportError:
        image_processor_class = LlavaNextImageProcessorPil

    # The tiny BPE stands in for Mistral's tokenizer: ids past it are never sampled, and
    # the image tokens (~1.2k per 336 px image) dominate the prompt either way.
    tokenizer = tiny_tokenizer()
    pinpoints = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    v_hidden, v_mlp, v_layers, v_heads = (32, 64, 2, 2) if shrink else (1024, 4096, 24, 16)
    t_hidden, t_mlp, t_layers, t_heads, t_kv = (
        (64, 128, 2, 4, 2) if shrink else (4096, 14336, 32, 32, 8)
    )
    vision = CLIPVisionConfig(
        hidden_size=v_hidden,
        intermediate_size=v_mlp,
        num_hidden_layers=v_layers,
        num_attention_heads=v_heads,
        image_size=336,
        patch_size=14,
        projection_dim=768,
        hidden_act="quick_gelu",
    )
    text = MistralConfig(
        vocab_size=32064,
        hidden_size=t_hidden,
        intermediate_size=t_mlp,
        num_hidden_layers=t_layers,
        num_attention_heads=t_heads,
        num_key_value_heads=t_kv,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        sliding_window=None,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaNextConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )
    with torch.device(device):
        model = LlavaNextForConditionalGeneration._from_config(
            config, dtype=torch.float32 if shrink else torch.bfloat16, attn_implementation="sdpa"
        )
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    processor = LlavaNextProcessor(
        image_processor=image_processor_class(
            size={"shortest_edge": 336},
            crop_size={"height": 336, "width": 336},
            image_grid_pinpoints=pinpoints,
        ),
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token=IMAGE_TOKEN,
    )
    return policy_from_model(model, processor, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="7B llava-next architecture on CUDA")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke run)")
    parser.add_argument(
        "--gpu-dry-run",
        action="store_true",
        help="the --gpu code path on CPU with a shrunken model (checks code, not speed)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per row; the fastest is kept (shared CPU)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.gpu or args.gpu_dry_run:
        if args.gpu and not torch.cuda.is_available():
            raise SystemExit("--gpu needs a CUDA device")
        device = "cuda" if args.gpu else "cpu"
        policy = llava_next_7b_random(device, shrink=not args.gpu)
        model_name = "llava-v1.6-mistral-7b architecture, random bf16"
        batches = (1, 8, 32, 128)
        rounds = {1: 4, 8: 2, 32: 2, 128: 1} if not args.quick else {b: 1 for b in batches}
        if args.gpu:
            device_name = torch.cuda.get_device_name()
        else:
            model_name = "DRY RUN: shrunken llava-next (anyres 336 px), CPU; not a speed figure"
            batches, rounds = (1, 8), {1: 1, 8: 1}
            device_name = "CPU"
            args.repeats = 1
    else:
        policy = load_policy("tiny", seed=0)
        model_name = "tiny LLaVA (CPU)"
        batches = (1, 8, 32)
        rounds = {1: 16, 8: 6, 32: 3} if not args.quick else {1: 4, 8: 2, 32: 1}
        device_name = f"CPU, {args.threads} threads ({platform.processor() or platform.machine()})"

    # Warm-up: first calls pay one-time costs (allocator, kernels, tokenizer caches).
    run_rollout(policy, 2, 1, 4, args.temperature)

    def fastest(run) -> dict:
        return max((run() for _ in range(max(1, args.repeats))), key=lambda r: r["tokens_per_s"])

    # The reference code's sampler (transformers' generate, batch 1) first, then ours.
    rows = [
        fastest(
            lambda: run_hf_generate_batch1(policy, rounds[1], args.max_new_tokens, args.temperature)
        )
    ]
    for batch in batches:
        rows.append(
            fastest(
                lambda batch=batch: run_rollout(
                    policy, batch, rounds[batch], args.max_new_tokens, args.temperature
                )
            )
        )
    reference = next(r for r in rows if r["sampler"] == "vlrl" and r["batch"] == 1)
    hf_reference = next(r for r in rows if r["sampler"] == "hf_generate")
    for row in rows:
        row["speedup_vs_batch1"] = row["tokens_per_s"] / reference["tokens_per_s"]
        row["speedup_vs_hf_batch1"] = row["tokens_per_s"] / hf_reference["tokens_per_s"]

    print(f"NumberLine rollout, {model_name}, {device_name}, max_new_tokens={args.max_new_tokens}")
    header = f"{'sampler':<12}{'batch':>6}{'tokens/s':>12}{'steps/s':>10}{'tok/out':>9}{'x vs b1':>9}{'x vs hf':>9}"
    if args.gpu:
        header += f"{'peak GiB':>10}"
    print(header)
    for row in rows:
        line = (
            f"{row['sampler']:<12}{row['batch']:>6}{row['tokens_per_s']:>12.1f}"
            f"{row['env_steps_per_s']:>10.2f}{row['tokens_per_output']:>9.1f}"
            f"{row['speedup_vs_batch1']:>9.2f}{row['speedup_vs_hf_batch1']:>9.2f}"
        )
        if args.gpu:
            line += f"{row.get('peak_gib', float('nan')):>10.1f}"
        print(line)
    biggest = max(r["batch"] for r in rows)
    summary = {
        "bench": "rollout",
        "device": device_name,
        "model": model_name,
        "max_new_tokens": args.max_new_tokens,
        "rows": [
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows
        ],
        "ratio_batch32_vs_batch1": next(
            (r["speedup_vs_batch1"] for r in rows if r["sampler"] == "vlrl" and r["batch"] == 32),
            None,
        ),
        "ratio_largest_vs_batch1": next(
            r["speedup_vs_batch1"] for r in rows if r["sampler"] == "vlrl" and r["batch"] == biggest
        ),
        "ratio_batch32_vs_hf_generate_batch1": next(
            (
                r["speedup_vs_hf_batch1"]
                for r in rows
                if r["sampler"] == "vlrl" and r["batch"] == 32
            ),
            None,
        ),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
