"""The sim-grounded reward, on real MuJoCo and a tiny dataset recorded here: the replay is exact, the
recorded actions score highest and reach the event where the episode does, and inputs are checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vans_sim.env import RoboDeskEnv
from vans_training.data import NextEventData
from vans_training.sim_reward import SimGroundedReward

K = 8


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> NextEventData:
    """Two episodes each of a button, a pick and a chained task, on the held-out scenes, so that a replay
    on the wrong scene split or with the wrong event numbering could not pass."""
    out = tmp_path_factory.mktemp("data") / "tiny"
    subprocess.run([sys.executable, "-m", "vans_sim.cli", "record", "--tasks",
                    "push_red,lift_upright_block,open_drawer_then_push_red", "--episodes", "2", "--image-size", "64",
                    "--split", "heldout", "--out", str(out), "--perturb-fraction", "0", "--quiet"], check=True)
    return NextEventData(Path(out), "all", future_frames=K, anchor_every=3)


@pytest.fixture(scope="module")
def reward(data) -> SimGroundedReward:
    return SimGroundedReward(data)


def straight_replay_reaches(data: NextEventData, index: int) -> bool:
    """Whether the recorded episode passes its anchor's event within K steps, from a fresh environment
    stepped from the reset without any saved state."""
    episode, t = data.anchors[index]
    start, length = data.starts[episode], data.lengths[episode]
    env = RoboDeskEnv(data.tasks[episode], split=data.scene_splits[episode], observe_image=False)
    env.reset(seed=int(data.seeds[episode]))
    for action in data.actions[start:start + t]:
        env.step(action)
    event = min(env._progress, len(env.task.events) - 1)
    for action in data.actions[start + t:start + min(t + K, length)]:
        env.step(action)
    return env._progress > event


def test_replay_renders_the_recorded_frames_bit_for_bit(data, reward):
    # every anchor of one episode per task, from the reset (t = 0) to the settling steps at the end
    episodes = [e for e in range(len(data.starts)) if data.seeds[e] == 0]
    indices = [i for i, (e, _) in enumerate(data.anchors) if e in episodes]
    assert {data.tasks[e] for e in episodes} == {"push_red", "lift_upright_block", "open_drawer_then_push_red"}
    assert all(reward.check_replay(i) for i in indices)


@pytest.mark.parametrize("scene", [["--shadows"], ["--cameras", "desk,side"]], ids=["shadows", "cameras"])
def test_replay_renders_the_scene_as_the_recording_did(scene, tmp_path):
    out = tmp_path / "recording"
    subprocess.run([sys.executable, "-m", "vans_sim.cli", "record", "--tasks", "push_red", "--episodes", "1",
                    "--split", "heldout", *scene, "--out", str(out), "--perturb-fraction", "0", "--quiet"],
                   check=True)
    recorded = NextEventData(out, "all", future_frames=K, anchor_every=12)
    assert recorded.shadows is ("--shadows" in scene) and len(recorded.cameras) == (2 if "--cameras" in scene else 1)
    assert all(SimGroundedReward(recorded).check_replay(i) for i in range(len(recorded)))


def test_recorded_actions_score_highest_and_reach_where_the_episode_does(data, reward):
    indices = np.arange(len(data))
    batch = data.batch(indices)
    rng = np.random.default_rng(0)
    recorded = reward(indices, batch.actions[:, None])
    zero = reward(indices, np.zeros((len(indices), 1, K, 4)))
    random = reward(indices, rng.uniform(-1, 1, (len(indices), 4, K, 4)))

    truth = np.asarray([straight_replay_reaches(data, i) for i in indices])
    assert truth.any() and not truth.all()
    np.testing.assert_array_equal(recorded.reached[:, 0], truth)
    np.testing.assert_array_equal(recorded.expert_reached, truth)
    np.testing.assert_array_equal(recorded.rewards[truth, 0], 1.0)
    # elsewhere they end exactly on the recorded state: restoring the saved state loses nothing
    np.testing.assert_array_equal(recorded.closeness[~truth, 0], 1.0)
    np.testing.assert_array_equal(recorded.rewards[~truth, 0], np.float32(reward.partial_credit))
    assert recorded.rewards.mean() > zero.rewards.mean() + 0.3
    assert recorded.rewards.mean() > random.rewards.mean() + 0.3
    assert (recorded.rewards[:, 0] >= zero.rewards[:, 0]).mean() > 0.9
    assert (recorded.rewards >= random.rewards).mean() > 0.9
    assert zero.events == batch.events


def test_anchors_after_the_task_is_done_score_one(data, reward):
    indices = np.arange(len(data))
    out = reward(indices, np.random.default_rng(1).uniform(-1, 1, (len(indices), 2, K, 4)))
    assert out.already_reached.any()
    np.testing.assert_array_equal(out.rewards[out.already_reached], 1.0)


def test_shapes_range_and_clipping(data, reward):
    indices = np.array([0, 5, 5, len(data) - 1])
    chunks = np.random.default_rng(2).uniform(-3, 3, (4, 3, 5, 4))  # K = 5 < 8 is allowed
    chunks[2] = chunks[1]
    out = reward(indices, chunks)
    for name in ("rewards", "reached", "closeness", "ee_distance", "gripper_distance", "object_distance"):
        assert getattr(out, name).shape == (4, 3), name
    assert out.rewards.dtype == np.float32 and out.expert_reached.shape == (4,) and len(out.events) == 4
    assert ((out.rewards >= 0) & (out.rewards <= 1)).all() and ((out.closeness >= 0) & (out.closeness <= 1)).all()
    assert np.all(out.rewards[~out.reached] < reward.partial_credit + 1e-6)
    clipped = reward(indices, np.clip(chunks, -1, 1))
    np.testing.assert_array_equal(out.rewards, clipped.rewards)
    # the same anchor and chunks twice in a batch score the same
    np.testing.assert_array_equal(out.rewards[1], out.rewards[2])


def test_states_are_cached_and_the_cache_is_bounded(data):
    reward = SimGroundedReward(data, cache_size=2)
    chunks = np.zeros((2, 4, K, 4))
    first = reward(np.array([1, 2]), chunks)
    assert reward.num_replays == 2  # once per anchor, not once per chunk
    second = reward(np.array([2, 1]), chunks)
    assert reward.num_replays == 2
    np.testing.assert_array_equal(first.rewards[::-1], second.rewards)
    reward(np.array([3]), chunks[:1])  # evicts anchor 2, the least recently used since the call before
    assert len(reward._cache) == 2 and reward.num_replays == 3
    reward(np.array([1]), chunks[:1])
    assert reward.num_replays == 3
    again = reward(np.array([2]), chunks[:1])
    assert reward.num_replays == 4
    np.testing.assert_array_equal(again.rewards[0], first.rewards[1])


@pytest.mark.parametrize("indices, chunks, match", [
    ([0, 1], np.zeros((2, K, 4)), "shape"),  # no group axis
    ([0, 1], np.zeros((3, 1, K, 4)), "shape"),  # B disagrees with the indices
    ([0, 1], np.zeros((2, 0, K, 4)), "shape"),  # no chunk
    ([0, 1], np.zeros((2, 1, K + 1, 4)), "shape"),  # longer than the recorded reference
    ([0, 1], np.zeros((2, 1, K, 3)), "shape"),  # wrong action size
    ([0, 1], np.full((2, 1, K, 4), np.nan), "NaN or inf"),
    ([0, 1], np.pad(np.zeros((2, 1, K - 1, 4)), ((0, 0), (0, 0), (0, 1), (0, 0)), constant_values=np.inf),
     "NaN or inf"),
    ([0, 10_000], np.zeros((2, 1, K, 4)), "indices must be in"),
    ([0.0, 1.0], np.zeros((2, 1, K, 4)), "integer"),
    ([[0, 1]], np.zeros((2, 1, K, 4)), "1-D"),
])
def test_bad_inputs_raise(reward, indices, chunks, match):
    with pytest.raises(ValueError, match=match):
        reward(np.asarray(indices), chunks)


@pytest.mark.parametrize("options", [{"ee_scale": 0}, {"object_scale": -1}, {"partial_credit": 1.0},
                                     {"cache_size": 0}])
def test_bad_options_raise(data, options):
    with pytest.raises(ValueError):
        SimGroundedReward(data, **options)
