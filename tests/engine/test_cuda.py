"""The torch backend on CUDA (bf16, CUDA graphs, graphed caption decoder). Skips where torch sees no GPU;
on the lent H100 (2026-11-22) bf16 frames were within 5 uint8 levels of the CPU's and actions within 3e-3."""

import numpy as np
import pytest
import torch

from vans_engine.planner import Planner
from vans_engine.testing import tiny_checkpoint

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: torch sees no GPU here")
INSTRUCTION = "push the red button"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt")
    frames = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    return folder, frames, Planner.from_pretrained(folder, backend="torch", device="cpu").plan(frames, INSTRUCTION, seed=0)


def test_bf16_cuda_graphs_match_the_cpu(setup):
    folder, frames, cpu = setup
    gpu = Planner.from_pretrained(folder, backend="torch", device="cuda")
    assert gpu.cuda_graphs and gpu.caption_cache == "graphed"
    plan = gpu.plan(frames, INSTRUCTION, seed=0)
    assert plan.caption == cpu.caption
    assert np.abs(plan.frames.astype(int) - cpu.frames).max() <= 8
    np.testing.assert_allclose(plan.actions, cpu.actions, atol=1e-2)
    assert len(gpu.plan(frames, INSTRUCTION, num_samples=3, seed=0).alternatives) == 2
    batch = gpu.plan_batch(np.stack([frames] * 3), [INSTRUCTION] * 3, seed=1)
    reused = gpu.plan_batch(np.stack([frames] * 3), [INSTRUCTION] * 3, seed=1, captions=[p.caption for p in batch])
    assert len(reused) == 3 and reused[0].actions.shape == (8, 4)


def test_fp32_eager_matches_the_cpu(setup):
    folder, frames, cpu = setup
    plan = Planner.from_pretrained(folder, backend="torch", device="cuda", cuda_graphs=False).plan(frames, INSTRUCTION, seed=0)
    assert plan.caption == cpu.caption and np.abs(plan.frames.astype(int) - cpu.frames).max() <= 1
