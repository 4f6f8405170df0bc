"""The oracle policies (the IDM on the expert's true future frames; the planner told the true caption)
and the closed-loop success table."""

from __future__ import annotations

import argparse
import functools
import json
import logging

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from vans_sim.env import RoboDeskEnv
from vans_sim.experts import ScriptedExpert

TASK = "push_red"


@pytest.fixture(scope="module")
def idm_folder(tmp_path_factory):
    from vans_engine.models.idm import InverseDynamicsModel

    folder = tmp_path_factory.mktemp("idm")
    InverseDynamicsModel(image_size=64, channels=(16, 32, 32, 32), hidden_dim=64).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def planner_folder(tmp_path_factory):
    from vans_engine.testing import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("planner") / "ckpt", idm_state=True)


# (policy, model: None, "idm", "planner" or "not a model", other options, the error it must raise)
BAD_OPTIONS = [
    ("OracleVideoPolicy", None, {}, "needs --model"),
    ("OracleVideoPolicy", "idm", {"split": "test"}, "split"),
    ("OracleVideoPolicy", "idm", {"image_size": 100}, "image_size"),
    ("OracleVideoPolicy", "idm", {"image_size": 128}, "takes 64-pixel"),
    ("OracleVideoPolicy", "idm", {"replan_every": 9}, "replan_every"),
    ("OracleVideoPolicy", "not a model", {}, "neither a planner checkpoint"),
    ("OracleVideoPolicy", "idm", {"motion_gain": 0.0}, "motion_gain must be > 0"),
    ("OracleVideoPolicy", "idm", {"expert_components": "y,depth"}, "unknown \\['depth'\\]"),
    ("OracleVideoPolicy", "idm", {"expert_components": ["y", "w"]}, "unknown \\['w'\\]"),
    ("OracleCaptionPolicy", None, {}, "needs --model"),
    ("OracleCaptionPolicy", "planner", {"split": "test"}, "split"),
    ("OracleCaptionPolicy", "planner", {"image_size": 128}, "takes 64-pixel"),
    ("OracleCaptionPolicy", "planner", {"replan_every": 9}, "replan_every"),
    ("OracleCaptionPolicy", "planner", {"steps": 0}, "steps"),
    ("OracleCaptionPolicy", "planner", {"expert_components": "yaw"}, "unknown \\['yaw'\\]"),
]


@pytest.mark.parametrize("policy, model, options, message", BAD_OPTIONS)
def test_options_are_checked(policy, model, options, message, idm_folder, planner_folder):
    from vans_training import policies

    folders = {None: None, "idm": str(idm_folder), "planner": str(planner_folder), "not a model": str(idm_folder.parent)}
    with pytest.raises(ValueError, match=message):
        getattr(policies, policy)(TASK, 1, model=folders[model], **options)


def test_shadow_stays_in_lock_step_through_an_episode_and_its_autoreset(idm_folder):
    from vans_training.policies import OracleVideoPolicy

    horizon, seed = 12, 7  # short episodes, so that the NEXT_STEP autoreset is exercised too
    policy = OracleVideoPolicy(TASK, 2, seed=seed, model=str(idm_folder), max_episode_steps=horizon)
    make = functools.partial(RoboDeskEnv, task=TASK, split="heldout", max_episode_steps=horizon)
    vec = SyncVectorEnv([make] * 2, autoreset_mode=AutoresetMode.NEXT_STEP)
    obs, _ = vec.reset(seed=[seed, seed + 1])
    policy.reset(np.arange(2))
    ended = np.zeros(2, int)
    for _ in range(horizon + 4):
        for i in range(2):  # the same image, and the same physical state bit for bit
            assert np.array_equal(policy.current[i]["image"], obs["image"][i])
            assert np.array_equal(policy.shadows[i].data.qpos, vec.envs[i].data.qpos)
            assert np.array_equal(policy.shadows[i].data.qvel, vec.envs[i].data.qvel)
        obs, _, terminated, truncated, _ = vec.step(policy.act(obs))
        ended += terminated | truncated
    vec.close()
    policy.close()
    assert ended.min() >= 1 and policy.mismatches == 0


def test_oracle_frames_are_the_experts_future(idm_folder):
    from vans_training.policies import OracleVideoPolicy

    seed = 11
    policy = OracleVideoPolicy(TASK, 2, seed=seed, model=str(idm_folder))
    envs = [RoboDeskEnv(task=TASK, split="heldout") for _ in range(2)]
    first = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    policy.reset(np.arange(2))
    policy.act({k: np.stack([o[k] for o in first]) for k in first[0]})
    for i in range(2):  # a separate environment run by the expert from the same seed shows the same frames
        env, expert = RoboDeskEnv(task=TASK, split="heldout"), ScriptedExpert(TASK)
        obs, _ = env.reset(seed=seed + i)
        frames = []
        for _ in range(policy.future_frames):
            obs, *_ = env.step(expert.act(obs).astype(np.float32))  # as ExpertPolicy hands them over
            frames.append(obs["image"])
        np.testing.assert_array_equal(policy.last_future_frames[i], np.stack(frames))
        assert not np.array_equal(frames[0], frames[-1])  # the expert moved: the check has teeth
    # the rollout left the shadow where it was: one step on from the reset, with the IDM's action
    assert all(s._steps == 1 for s in policy.shadows)
    policy.close()


class ExpertActionsIDM:
    """A stand-in for a perfect IDM: it answers each oracle video with the actions that made it."""

    def __init__(self, policy):
        self.policy = policy

    def predict_action_chunk(self, frames, state=None):
        import torch

        current = ((frames[:, 0].permute(0, 2, 3, 1) + 1.0) * 127.5).round().to(torch.uint8).numpy()
        envs = [next(i for i in range(self.policy.num_envs) if np.array_equal(self.policy.current[i]["image"], c))
                for c in current]
        return torch.from_numpy(np.stack([self.policy.last_expert_actions[i] for i in envs]))


@pytest.mark.parametrize("policy, expert_components", [
    ("OracleVideoPolicy", ""), ("OracleVideoPolicy", "x, y,z,gripper"),
    ("OracleVideoPolicy", ["gripper", "z", "y", "x"]), ("OracleCaptionPolicy", "x,y,z,gripper")])
def test_with_a_perfect_idm_the_oracle_is_the_expert(idm_folder, planner_folder, policy, expert_components):
    """A perfect IDM, or an untrained IDM (or planner, with its VLM's captions) whose every action
    component is swapped for the expert's."""
    from vans_sim.policies import ExpertPolicy
    from vans_training import policies

    def rollout(policy):
        vec = SyncVectorEnv([functools.partial(RoboDeskEnv, task=TASK, split="heldout")] * 2,
                            autoreset_mode=AutoresetMode.NEXT_STEP)
        obs, _ = vec.reset(seed=[3, 4])
        policy.reset(np.arange(2))
        live, steps, success = np.ones(2, bool), np.zeros(2, int), np.zeros(2, bool)
        while live.any():
            obs, _, terminated, truncated, _ = vec.step(policy.act(obs))
            steps += live
            success |= live & terminated
            live &= ~(terminated | truncated)
        vec.close()
        return success.tolist(), steps.tolist()

    if policy == "OracleVideoPolicy":
        oracle = policies.OracleVideoPolicy(TASK, 2, seed=3, model=str(idm_folder), expert_components=expert_components)
        if not expert_components:
            oracle.idm = ExpertActionsIDM(oracle)
    else:
        oracle = policies.OracleCaptionPolicy(TASK, 2, seed=3, model=str(planner_folder), vlm_captions=True,
                                              expert_components=expert_components)
    expected = rollout(ExpertPolicy(TASK, 2))
    assert expected[0] == [True, True]
    assert rollout(oracle) == expected  # the same episodes, step for step
    assert oracle.mismatches == 0


def test_oracle_motion_gain_scales_the_idms_motion_not_its_gripper(idm_folder):
    from vans_training.policies import OracleVideoPolicy

    env = RoboDeskEnv(task=TASK, split="heldout")
    obs, _ = env.reset(seed=5)
    env.close()
    batch = {k: v[None] for k, v in obs.items()}
    acted = []
    for gain in (1.0, 3.0):
        oracle = OracleVideoPolicy(TASK, 1, seed=5, model=str(idm_folder), motion_gain=gain)
        oracle.idm = ExpertActionsIDM(oracle)
        oracle.reset(np.arange(1))
        acted.append(np.concatenate([oracle.act(batch), np.stack(oracle.queued[0])]))
        oracle.close()
    plain, gained = acted
    np.testing.assert_allclose(gained[:, :3], np.clip(3.0 * plain[:, :3], -1.0, 1.0), atol=1e-6)
    np.testing.assert_array_equal(gained[:, 3], plain[:, 3])
    assert not np.array_equal(gained, plain)


def test_expert_components_replace_only_those_columns(idm_folder):
    from vans_training.policies import OracleVideoPolicy

    env = RoboDeskEnv(task=TASK, split="heldout")
    obs, _ = env.reset(seed=5)
    env.close()
    batch = {k: v[None] for k, v in obs.items()}
    acted = {}
    for components in ("", "y"):
        oracle = OracleVideoPolicy(TASK, 1, seed=5, model=str(idm_folder), motion_gain=2.0,
                                   expert_components=components)
        oracle.reset(np.arange(1))
        acted[components] = np.concatenate([oracle.act(batch), np.stack(oracle.queued[0])])
        expert = oracle.last_expert_actions[0][: oracle.replan_every]
        oracle.close()
    np.testing.assert_array_equal(acted["y"][:, 1], expert[:, 1])  # the expert's y, not gained
    np.testing.assert_array_equal(acted["y"][:, [0, 2, 3]], acted[""][:, [0, 2, 3]])  # the IDM's rest
    assert not np.array_equal(acted["y"][:, 1], acted[""][:, 1])


@pytest.mark.parametrize("policy", ["oracle-video", "oracle-caption"])
def test_scored_through_the_vans_sim_cli(policy, planner_folder, tmp_path, caplog):
    from vans_sim.cli import main

    out = tmp_path / "score"
    with caplog.at_level(logging.WARNING, logger="vans_training.policies"):
        assert main(["score", "--policy", policy, "--model", str(planner_folder), "--tasks", TASK, "--episodes", "2",
                     "--num-envs", "2", "--split", "heldout", "--no-video", "--quiet",
                     "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["policy"] == policy and report["tasks"][TASK]["episodes"] == 2
    assert "no longer matches" not in caplog.text


def test_shadowed_scenes_need_shadowed_oracles(planner_folder, tmp_path, caplog):
    from vans_sim.cli import main

    command = ["score", "--policy", "oracle-video", "--model", str(planner_folder), "--tasks", TASK, "--episodes", "1",
               "--num-envs", "1", "--split", "heldout", "--shadows", "--no-video", "--quiet"]
    with caplog.at_level(logging.WARNING, logger="vans_training.policies"):
        assert main([*command, "--policy-option", "render_shadows=true", "--out", str(tmp_path / "matched")]) == 0
        assert "no longer matches" not in caplog.text
        assert main([*command, "--out", str(tmp_path / "unmatched")]) == 0  # the plain shadow disagrees at once
    assert "no longer matches" in caplog.text


def test_an_idm_of_two_cameras_is_scored_on_both_views(tmp_path, capsys):
    """The oracle's shadows render the IDM's cameras: scored with the same --cameras it stays in lock
    step; scored on the desk camera alone it stops with an error that names the option."""
    from vans_engine.models.idm import InverseDynamicsModel
    from vans_sim.cli import main

    folder = tmp_path / "idm"
    InverseDynamicsModel(channels=(16, 32, 32, 32), hidden_dim=64, pooling="mean_max",
                         cameras=("desk", "side")).save_pretrained(folder)
    command = ["score", "--policy", "oracle-video", "--model", str(folder), "--tasks", TASK, "--episodes", "1",
               "--num-envs", "1", "--split", "heldout", "--no-video", "--quiet"]
    assert main([*command, "--cameras", "desk,side", "--out", str(tmp_path / "both")]) == 0
    report = json.loads((tmp_path / "both" / "report.json").read_text())
    assert report["tasks"][TASK]["episodes"] == 1
    assert main([*command, "--out", str(tmp_path / "desk-only")]) == 2
    assert "the scored environments render (64, 64, 3): score with --cameras desk,side" in capsys.readouterr().err


def test_oracle_caption_plans_with_the_true_caption_from_the_true_context(planner_folder):
    from vans_sim.env import proprioception
    from vans_training.policies import OracleCaptionPolicy

    horizon, seed = 12, 5  # short episodes, so that the context restarts at the NEXT_STEP autoreset too
    policy = OracleCaptionPolicy(TASK, 2, seed=seed, model=str(planner_folder), max_episode_steps=horizon)
    make = functools.partial(RoboDeskEnv, task=TASK, split="heldout", max_episode_steps=horizon)
    vec = SyncVectorEnv([make] * 2, autoreset_mode=AutoresetMode.NEXT_STEP)
    obs, infos = vec.reset(seed=[seed, seed + 1])
    policy.reset(np.arange(2))
    # the first plan: the first frame repeated as context, the event's recorded caption, not the VLM's
    context = np.repeat(obs["image"][:, None], policy.planner.config.context_frames, axis=1)
    expected = policy.planner.plan_batch(context, [policy.shadows[0].instruction] * 2, seed=seed,
                                         captions=list(infos["caption"]), states=proprioception(obs))
    actions = policy.act(obs)
    assert policy.last_captions == list(infos["caption"])
    np.testing.assert_allclose(actions, np.clip([p.actions[0] for p in expected], -1, 1), rtol=1e-5, atol=1e-6)
    frames, ended = [obs["image"]] * policy.planner.config.context_frames, np.zeros(2, int)
    for _ in range(horizon + 4):
        obs, _, terminated, truncated, _ = vec.step(actions)
        frames.append(obs["image"])
        for i in range(2):  # the context is the real environment's last frames (before any episode end)
            if not ended[i] and not (terminated[i] or truncated[i]):
                np.testing.assert_array_equal(np.stack(list(policy.history[i])),
                                              np.stack(frames[-policy.planner.config.context_frames:])[:, i])
        ended += terminated | truncated
        actions = policy.act(obs)
    vec.close()
    policy.close()
    assert ended.min() >= 1 and policy.mismatches == 0


def test_oracle_caption_with_vlm_captions_is_the_planner(planner_folder):
    """With the VLM's captions and no expert component, the first plan is the planner's own."""
    from vans_sim.env import proprioception
    from vans_training.policies import OracleCaptionPolicy

    policy = OracleCaptionPolicy(TASK, 1, seed=7, model=str(planner_folder), vlm_captions=True)
    env = RoboDeskEnv(task=TASK, split="heldout")
    obs, info = env.reset(seed=7)
    env.close()
    batch = {k: v[None] for k, v in obs.items()}
    policy.reset(np.arange(1))
    actions = policy.act(batch)
    context = np.repeat(batch["image"][:, None], policy.planner.config.context_frames, axis=1)
    expected = policy.planner.plan_batch(context, [policy.shadows[0].instruction], seed=7,
                                         states=proprioception(batch))[0]
    policy.close()
    assert policy.last_captions == [expected.caption] and expected.caption != info["caption"]
    np.testing.assert_allclose(actions[0], np.clip(expected.actions[0], -1, 1), rtol=1e-5, atol=1e-6)


def test_closed_loop_table_expert_beats_random(tmp_path):
    from vans_training import closed_loop

    parser = argparse.ArgumentParser()
    closed_loop.add_arguments(parser)
    args = parser.parse_args(["--tasks", TASK, "--episodes", "2", "--splits", "heldout", "--num-envs", "2",
                              "--vector", "sync", "--out", str(tmp_path)])
    assert closed_loop.run(args) == 0
    table = json.loads((tmp_path / "closed_loop.json").read_text())
    rate = {run: table["runs"][run]["heldout"]["tasks"][TASK]["success_rate"] for run in ("expert", "random")}
    assert rate["expert"] > rate["random"]
    md = (tmp_path / "closed_loop.md").read_text()
    assert "single-task mean" in md and "expert · heldout" in md and "%" in md
    assert (tmp_path / "closed_loop.png").stat().st_size > 0
    assert (tmp_path / "expert-heldout" / "report.json").is_file()
    # a second run with the same settings finds every report and scores nothing again
    mtime = (tmp_path / "expert-heldout" / "report.json").stat().st_mtime_ns
    assert closed_loop.run(args) == 0
    assert (tmp_path / "expert-heldout" / "report.json").stat().st_mtime_ns == mtime
    # other cameras are other settings: the expert is scored again, on both views
    args = parser.parse_args(["--tasks", TASK, "--episodes", "2", "--splits", "heldout", "--num-envs", "2",
                              "--vector", "sync", "--no-random", "--cameras", "desk,side", "--out", str(tmp_path)])
    assert closed_loop.run(args) == 0
    assert (tmp_path / "expert-heldout" / "report.json").stat().st_mtime_ns != mtime
    settings = json.loads((tmp_path / "expert-heldout" / closed_loop.SETTINGS_FILE).read_text())
    assert settings["cameras"] == ["desk", "side"]


def test_tools_that_read_true_frames_refuse_an_action_head_on_vdm_tokens(idm_folder, tmp_path):
    """oracle-video, idm-eval and IDM-driven DAgger read actions from true frames: a planner's action
    head on VDM tokens (VideoFeatureIDM) cannot, and is refused by name."""
    from vans_engine.models.idm import VideoFeatureIDM
    from vans_training.policies import load_idm

    VideoFeatureIDM(feature_dim=32, num_frames=8, patch_grid=(8, 8), cell_dim=8, hidden_dim=32).save_pretrained(
        tmp_path / "idm")
    with pytest.raises(ValueError, match="reads the VDM's tokens, not frames: reading actions from true frames"):
        load_idm(tmp_path / "idm")
    idm, k = load_idm(idm_folder)
    assert not idm.reads_vdm_features and k == 8
