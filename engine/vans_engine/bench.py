"""Planner latency and throughput, for ``vans bench``.

Latency: ``repeats`` plans at batch 1 after two warm-up plans; p50 and p95 of the whole plan and of
each stage (VLM caption, caption encoding, VDM denoising, IDM). Throughput: plans per second when
``plan_batch`` plans B clips at once. Peak memory: the process's resident set on the CPU, or CUDA's
peak allocation on a GPU.
"""

from __future__ import annotations

import platform
import resource
import time

import numpy as np
import torch

from vans_engine.planner import Planner

INSTRUCTION = "push the red button"


def _percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95))}


def run_bench(model: str, backend: str = "onnxruntime", device: str = "cpu", steps: int | None = None,
              repeats: int = 20, batch_sizes: tuple[int, ...] = (1, 16), cuda_graphs: bool = True,
              caption_tokens: int = 16, caption_cache: str | None = None) -> dict:
    """Time the planner; see the module docstring.

    Args:
        caption_tokens (`int`, defaults to 16): every caption is decoded to exactly this many tokens,
            so that trained and untrained checkpoints (which may stop at once) are timed alike.
        caption_cache (`str`, *optional*): transformers' KV cache for caption decoding ("static").
    """
    planner = Planner.from_pretrained(model, backend=backend, device=device, cuda_graphs=cuda_graphs)
    cfg = planner.config
    cfg.max_caption_tokens = planner.min_caption_tokens = caption_tokens
    planner.caption_cache = caption_cache
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (cfg.context_frames, *cfg.frame_size, 3), dtype=np.uint8)
    state = rng.uniform(0.0, 1.0, planner.idm.config.state_dim).astype(np.float32)  # timing only: any state does
    steps = steps or cfg.num_inference_steps
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    for _ in range(2):  # warm-up: lazy initialisation, allocator, graph capture
        planner.plan(clip, INSTRUCTION, steps=steps, seed=0, state=state)
    stages: dict[str, list[float]] = {}
    for i in range(repeats):
        plan = planner.plan(clip, INSTRUCTION, steps=steps, seed=i, state=state)
        for name, ms in plan.timings.items():
            stages.setdefault(name, []).append(ms)

    # The same plans reusing a caption (the event has not changed since the last plan): no VLM.
    reused = []
    for i in range(repeats):
        plan = planner.plan_batch(clip[None], [INSTRUCTION], steps=steps, seed=i, captions=[plan.caption],
                                  states=state[None])[0]
        reused.append(plan.timings["total"])

    throughput = {}
    for batch in batch_sizes:
        clips, states = np.repeat(clip[None], batch, axis=0), np.repeat(state[None], batch, axis=0)
        planner.plan_batch(clips, [INSTRUCTION] * batch, steps=steps, seed=0, states=states)
        rounds = max(1, min(5, repeats // batch))
        started = time.perf_counter()
        for r in range(rounds):
            planner.plan_batch(clips, [INSTRUCTION] * batch, steps=steps, seed=r, states=states)
        throughput[batch] = batch * rounds / (time.perf_counter() - started)

    if device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "backend": backend, "device": device, "steps": steps, "repeats": repeats,
        "image_size": cfg.image_size, "cameras": list(cfg.cameras), "context_frames": cfg.context_frames, "future_frames": cfg.future_frames,
        "plan_ms": _percentiles(stages.pop("total")),
        "plan_ms_reused_caption": _percentiles(reused), "caption_tokens": caption_tokens,
        "cuda_graphs": planner.cuda_graphs, "caption_cache": caption_cache or "dynamic",
        "stage_ms": {name: _percentiles(v) for name, v in stages.items()},
        "peak_memory_mb": peak_mb, "trained": planner.trained,
        "machine": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
    }
    for batch, value in throughput.items():
        result[f"plans_per_s_batch{batch}"] = value
    return result
