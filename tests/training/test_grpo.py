"""Joint-GRPO: the algorithm's pieces on known numbers, and CPU smoke runs of the three stages
(``grpo-vlm``, ``grpo-vdm``, ``grpo-joint``) from the shipped SFT model on a tiny recorded dataset."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from vans_engine.models.vdm import as_denoiser, make_vdm, zero_output_layer

from vans_training.config import GRPOJointConfig, GRPOVDMConfig, GRPOVLMConfig, load_config
from vans_training.flow_sde import sde_rollout, sde_sigmas, sde_step_mean_std, step_log_probs
from vans_training.rewards import combine, format_reward, static_penalty, video_similarity
from vans_training.stages import get_stage
from vans_training.stages.grpo import clipped_surrogate, group_advantages, k3_kl
from vans_training.trainer import read_log, train

ROOT = Path(__file__).resolve().parents[2]
SFT_MODEL = ROOT / "models" / "vans-desk-64-sft"
CONFIGS = ROOT / "training" / "configs"
SMALL = {"batch_size": 1, "group_size": 4, "log_freq": 1, "eval_samples": 4, "num_threads": 2, "anchor_every": 8}
STAGE_CONFIGS = {"grpo-vlm": GRPOVLMConfig, "grpo-vdm": GRPOVDMConfig, "grpo-joint": GRPOJointConfig}


# -- the algorithm's pieces ----------------------------------------------------------------------------

def test_advantages_are_normalised_within_each_group():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 6.0], [5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 0.0, 1.0]])
    advantages = group_advantages(rewards)
    torch.testing.assert_close(advantages.mean(1), torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(advantages.std(1, unbiased=False)[[0, 2]], torch.ones(2), atol=1e-3, rtol=0)
    assert torch.equal(advantages[1], torch.zeros(4))  # a group whose rollouts tie teaches nothing
    assert advantages[0].argmax() == 3 and advantages[2, 3] > 0 > advantages[2, 0]


def test_clipped_objective_and_kl():
    old = torch.zeros(4)
    new = torch.tensor([0.0, 0.5, -0.5, 0.5])
    advantages = torch.tensor([1.0, 1.0, 1.0, -1.0])
    loss, clipped = clipped_surrogate(new, old, advantages, clip_range=0.2)
    # ratio e^0.5 = 1.65 with a positive advantage is clipped at 1.2; with a negative one it is not
    torch.testing.assert_close(loss, torch.tensor([-1.0, -1.2, -np.exp(-0.5), np.exp(0.5)], dtype=torch.float32))
    assert clipped.tolist() == [0.0, 1.0, 0.0, 0.0]
    kl = k3_kl(new, old)
    assert kl[0] == 0 and (kl >= 0).all() and torch.isfinite(kl).all()


def test_sde_step_without_noise_is_the_euler_step_and_log_probs_are_consistent():
    torch.manual_seed(0)
    sample, velocity = torch.randn(2, 3, 8, 16, 16), torch.randn(2, 3, 8, 16, 16)
    mean, std = sde_step_mean_std(sample, velocity, 0.75, 0.5, 0.75, noise_level=0.0)
    torch.testing.assert_close(mean, sample - 0.25 * velocity)
    assert std == 0.0

    transformer = make_vdm(num_layers=1, num_attention_heads=2, attention_head_dim=32, ffn_dim=64)
    denoiser = as_denoiser(zero_output_layer(transformer), "current_frame_residual")
    with torch.no_grad():  # a non-trivial residual
        transformer.proj_out.weight.normal_(0, 0.02)
    context = torch.rand(2, 4, 3, 64, 64) * 2 - 1
    tokens = torch.randn(2, 32, transformer.config.text_dim)
    noise = torch.randn(2, 3, 8, 64, 64)
    rollout = sde_rollout(denoiser, context, tokens, noise, steps=3, noise_level=0.7,
                          generator=torch.Generator().manual_seed(0))
    assert rollout.samples.shape == (3, 2, 3, 8, 64, 64) and rollout.log_probs.shape == (2, 2)
    assert rollout.videos.shape == (2, 8, 3, 64, 64) and rollout.videos.abs().max() <= 1
    assert sde_sigmas(3).tolist() == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])
    for j in range(2):  # recomputing a stored step's log-probability gives what sampling recorded
        log_probs, _, _ = step_log_probs(denoiser, rollout.samples, context, tokens, 3, 0.7, j)
        torch.testing.assert_close(log_probs, rollout.log_probs[:, j], atol=1e-5, rtol=0)
    # the drawn sample is likelier under its own step than a neighbour's draw
    swapped = rollout.samples.clone()
    swapped[1] = swapped[1].flip(0)
    assert (step_log_probs(denoiser, swapped, context, tokens, 3, 0.7, 0)[0] < rollout.log_probs[:, 0]).all()


def test_video_terms():
    rng = np.random.default_rng(0)
    current = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    truth = np.repeat(current[:, None], 4, axis=1)
    truth[:, :, 4:8] = 255 - truth[:, :, 4:8]  # the event changes a band of the frame
    held = np.repeat(current[:, None], 4, axis=1)
    assert video_similarity(truth, truth, current) == pytest.approx(1.0)
    assert video_similarity(held, truth, current) == pytest.approx(0.5)
    assert static_penalty(held, truth, current) == pytest.approx(1.0)
    assert static_penalty(truth, truth, current) == pytest.approx(0.0)
    assert static_penalty(held, held, current) == pytest.approx(0.0)  # nothing was to move: no penalty
    assert format_reward(["the gripper presses the red button", "the gripper flies", ""], [6, 4, 0], 20).tolist() \
        == [1.0, 0.0, 0.0]
    assert format_reward(["the gripper presses the red button"], [20], 20).tolist() == [0.0]  # cut off
    terms = {"a": np.array([1.0, 0.0]), "b": np.array([0.5, 0.5])}
    assert combine(terms, {"a": 1.0, "b": -2.0, "sim": 0.0}).tolist() == [0.0, -1.0]
    with pytest.raises(ValueError, match="'sim'"):
        combine(terms, {"a": 1.0, "sim": 1.0})


def test_every_grpo_config_loads():
    for name, cls in (("grpo_vlm", GRPOVLMConfig), ("grpo_vdm", GRPOVDMConfig), ("grpo_joint", GRPOJointConfig)):
        config = load_config(cls, CONFIGS / f"{name}.yaml")
        assert config.group_size == 8 and config.beta == 0.004 and config.clip_range == 1e-3
    with pytest.raises(ValueError, match="group_size"):
        GRPOVLMConfig(group_size=1)
    with pytest.raises(ValueError, match="sde_steps"):
        GRPOVDMConfig(sde_steps=1)


# -- smoke runs ---------------------------------------------------------------------------------------

def stage_config(stage: str, data: Path, out: Path, **fields):
    return STAGE_CONFIGS[stage](data=str(data), output_dir=str(out), **{"model": str(SFT_MODEL), **SMALL, **fields})


@pytest.mark.parametrize("stage, sim", [("grpo-vlm", False), ("grpo-vdm", True), ("grpo-joint", False)])
def test_grpo_stage_computes_rewards_normalises_advantages_and_trains(stage, sim, tiny_dataset, tmp_path):
    weights = {**STAGE_CONFIGS[stage]().reward_weights, "sim": 1.0 if sim else 0.0}
    config = stage_config(stage, tiny_dataset, tmp_path / stage, max_steps=2, eval_freq=2, save_freq=2,
                          updates_per_rollout=2, reward_weights=weights)
    # one rollout by hand: every weighted term computed, advantages normalised per group
    rollout = get_stage(stage)(config, torch.device("cpu")).rollout(np.random.default_rng(0))
    advantages = rollout["advantages"].view(-1, config.group_size)
    torch.testing.assert_close(advantages.mean(1), torch.zeros(len(advantages)), atol=1e-5, rtol=0)
    spread = advantages.std(1, unbiased=False)
    assert all(s == pytest.approx(1.0, abs=1e-2) or s == 0 for s in spread.tolist())
    expected = {f"reward_{name}" for name, weight in weights.items() if weight}
    assert expected <= set(rollout["log"]) and all(np.isfinite(v) for v in rollout["log"].values())

    final = train(get_stage(stage), config, progress=False)
    rows = read_log(config.output_dir)
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert expected <= set(row)
        kls = [v for k, v in row.items() if k.endswith("kl")]
        assert kls and all(np.isfinite(kls)) and np.isfinite(row["loss"])
    assert rows[0][next(k for k in rows[0] if k.endswith("kl"))] == 0.0  # the first update starts at the reference
    evaluation = read_log(config.output_dir, "eval")[-1]
    assert all(np.isfinite(v) for k, v in evaluation.items() if k not in ("kind", "step"))
    assert (final / ("vlm" if stage == "grpo-joint" else "") / "config.json").is_file()


def record_prompted_states(vlm) -> list:
    """Wrap ``vlm.build_inputs`` so that it also appends the ``states`` of every call to the returned list."""
    prompted, build_inputs = [], vlm.build_inputs

    def recording_build_inputs(*args, **kwargs):
        prompted.append(kwargs.get("states"))
        return build_inputs(*args, **kwargs)

    vlm.build_inputs = recording_build_inputs
    return prompted


def test_grpo_prompts_a_vlm_that_reads_proprioception_with_each_samples_state(tiny_dataset, tmp_path):
    """Stage 1's captions, their log-probabilities and stage 2's anchor captions all come from prompts
    that state the sample's proprioception, repeated over its group."""
    from vans_engine.checkpoint import read_model_index, write_model_index

    model = tmp_path / "model"  # the SFT model, its VLM now shown the state
    shutil.copytree(SFT_MODEL, model)
    vlm_config = json.loads((model / "vlm" / "config.json").read_text())
    (model / "vlm" / "config.json").write_text(json.dumps({**vlm_config, "reads_state": True}))
    write_model_index(model, {k: v for k, v in read_model_index(model).items() if k != "files"})
    config = stage_config("grpo-vlm", tiny_dataset, tmp_path / "grpo-vlm", model=str(model),
                          batch_size=2, max_steps=1)
    stage = get_stage("grpo-vlm")(config, torch.device("cpu"))
    assert stage.vlm.reads_state
    prompts = record_prompted_states(stage.vlm)
    rng = np.random.default_rng(0)
    rollout = stage.rollout(rng)
    batch, _ = stage.draw_samples(np.random.default_rng(0))
    expected = np.repeat(batch.state[:, 0], config.group_size, axis=0)
    np.testing.assert_array_equal(rollout["states"], expected)
    np.testing.assert_array_equal(prompts[0], batch.state[:, 0])  # the drawn group: one prompt per sample
    assert all(np.array_equal(states, expected) for states in prompts[1:])  # old and reference log-probs
    loss, log = stage.policy_loss(rollout)
    assert torch.isfinite(loss) and np.isfinite(log["kl"])

    anchor = get_stage("grpo-vdm")(stage_config("grpo-vdm", tiny_dataset, tmp_path / "grpo-vdm",
                                                model=str(model), vlm=""), torch.device("cpu"))
    anchor_prompts = record_prompted_states(anchor.anchor_vlm)
    anchors, _ = anchor.anchor_captions(batch, seed=0)
    assert len(anchors) == len(batch)
    np.testing.assert_array_equal(anchor_prompts[0], batch.state[:, 0])


def test_killed_grpo_run_resumes(tiny_dataset, tmp_path, kill_at_first_checkpoint):
    out = tmp_path / "grpo-vdm"
    command = [sys.executable, "-m", "vans_training.cli", "grpo-vdm", "--config", str(CONFIGS / "grpo_vdm.yaml"),
               "--quiet", "--set", f"data={tiny_dataset}", "--set", f"output_dir={out}", "--set", f"model={SFT_MODEL}",
               "--set", "vlm=", "--set", "save_freq=1", "--set", "eval_freq=1000", "--set", "batch_size=1",
               "--set", "group_size=2", "--set", "num_threads=2"]
    checkpoint = kill_at_first_checkpoint(command + ["--set", "max_steps=400"], out)
    killed_at = int(checkpoint.name)
    finished = subprocess.run(command + ["--set", f"max_steps={killed_at + 2}"], capture_output=True, text=True,
                              check=True)
    assert f"resuming grpo-vdm from {checkpoint} at step {killed_at}" in finished.stdout
    assert [row["step"] for row in read_log(out)][-1] == killed_at + 2
    assert (out / "final" / "config.json").is_file()


def test_compare_pairs_per_sample_scores_into_bootstrap_intervals(tmp_path):
    from vans_training.compare import COLUMNS, PAIRED, compare

    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, (64, len(PAIRED)))
    # "better" adds 0.05 to every sample (an interval that excludes 0), "noisy" noise of mean exactly 0
    noise = rng.normal(0, 0.05, base.shape)
    for name, change in (("sft", 0.0), ("better", 0.05), ("noisy", noise - noise.mean(0))):
        (tmp_path / name).mkdir()
        result = {column: 0.5 for column in COLUMNS}
        (tmp_path / name / "eval.json").write_text(json.dumps({**result, "data": "d", "split": "all", "samples": 64}))
        scores = base + change
        lines = [json.dumps({"index": int(i), **dict(zip(PAIRED, scores[i]))}) for i in rng.permutation(64)]
        (tmp_path / name / "samples.jsonl").write_text("\n".join(lines) + "\n")
    table = compare([f"SFT={tmp_path / 'sft'}", f"better={tmp_path / 'better'}", f"noisy={tmp_path / 'noisy'}"],
                    tmp_path / "table").read_text()
    better = next(line for line in table.splitlines() if line.startswith("| better | **"))
    assert better.count("**+0.050 [+0.050, +0.050]**") == len(PAIRED)  # rows were paired by index
    noisy = next(line for line in table.splitlines() if line.startswith("| noisy | ") and "[" in line)
    assert "**" not in noisy
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "eval.json").write_text((tmp_path / "sft" / "eval.json").read_text())
    (tmp_path / "other" / "samples.jsonl").write_text(json.dumps({"index": 999, **dict(zip(PAIRED, base[0]))}) + "\n")
    with pytest.raises(ValueError, match="other samples"):
        compare([f"SFT={tmp_path / 'sft'}", f"other={tmp_path / 'other'}"], tmp_path / "x")


def test_compare_tables_rows_against_the_first_and_refuses_different_data(tmp_path):
    from vans_training.compare import COLUMNS, compare

    for name, shift in (("a", 0.0), ("b", 0.1)):
        (tmp_path / name).mkdir()
        result = {column: 0.5 + shift for column in COLUMNS}
        result.update(data="data/heldout", split="all", samples=8)
        (tmp_path / name / "eval.json").write_text(json.dumps(result))
    table = compare([f"SFT={tmp_path / 'a'}", f"GRPO={tmp_path / 'b'}"], tmp_path / "out" / "table").read_text()
    assert "| SFT | 0.500 |" in table and "0.600 (+0.100)" in table
    assert (tmp_path / "out" / "table.png").stat().st_size > 0
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "eval.json").write_text(json.dumps({**result, "samples": 16}))
    with pytest.raises(ValueError, match="samples"):
        compare([f"SFT={tmp_path / 'a'}", f"other={tmp_path / 'c'}"], tmp_path / "x")


def test_compare_pairs_recordings_of_the_same_episodes_with_other_cameras(tmp_path):
    """A one-camera and a two-camera recording of the same episodes are the same data; a recording of
    other seeds, or one whose settings cannot be read, is not."""
    from vans_sim.dataset import RECORD_ARGS
    from vans_training.compare import COLUMNS, compare

    settings = {"tasks": ["push_red"], "episodes": 4, "split": "heldout", "seed_start": 100000, "cameras": ["desk"]}
    recordings = {"desk": settings, "desk-side": {**settings, "cameras": ["desk", "side"]},
                  "other-seeds": {**settings, "cameras": ["desk", "side"], "seed_start": 0}}
    for name, args in recordings.items():
        (tmp_path / "data" / name).mkdir(parents=True)
        (tmp_path / "data" / name / RECORD_ARGS).write_text(json.dumps(args))
        (tmp_path / name).mkdir()
        (tmp_path / name / "eval.json").write_text(json.dumps(
            {**{column: 0.5 for column in COLUMNS}, "data": str(tmp_path / "data" / name), "split": "all", "samples": 8}))
    table = compare([f"desk={tmp_path / 'desk'}", f"two views={tmp_path / 'desk-side'}"], tmp_path / "t").read_text()
    assert f"the same episodes recorded with other cameras: `{tmp_path / 'data' / 'desk-side'}`" in table
    with pytest.raises(ValueError, match="different data"):
        compare([f"desk={tmp_path / 'desk'}", f"other={tmp_path / 'other-seeds'}"], tmp_path / "x")
    (tmp_path / "data" / "desk-side" / RECORD_ARGS).unlink()
    with pytest.raises(ValueError, match="different data"):
        compare([f"desk={tmp_path / 'desk'}", f"two views={tmp_path / 'desk-side'}"], tmp_path / "x")
