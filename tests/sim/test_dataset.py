import json

import h5py
import numpy as np
import pytest

from vans_sim.dataset import RECORD_ARGS, DatasetError, DemoDataset
from vans_sim.record import RecordConfig, _record_shard, record, rollout

CONFIG = RecordConfig(tasks=("push_red", "open_drawer_then_push_red"), episodes=3, perturb_fraction=1 / 3,
                      shard_size=2)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("rec")
    summary = record(CONFIG, out, workers=2, progress=False)
    assert summary["episodes"] == 6 and summary["resumed"] is False
    return out


def test_robomimic_layout(dataset_dir):
    with h5py.File(dataset_dir / "demo.hdf5") as f:
        assert json.loads(f["data"].attrs["env_args"])["env_name"] == "vans_sim/RoboDesk-v0"
        demo = f["data/demo_0"]
        n = demo.attrs["num_samples"]
        assert demo["actions"].shape == (n, 4)
        assert demo["obs/image"].shape == (n, 64, 64, 3) and demo["obs/image"].dtype == np.uint8
        assert demo["next_obs/ee_pos"].shape == (n, 3)
        assert demo["captions"].shape == (n,)
        names = {n.decode() for n in f["mask/train"][()]} | {n.decode() for n in f["mask/valid"][()]}
        assert names == set(f["data"].keys())
        assert f["data"].attrs["total"] == sum(f[f"data/{k}"].attrs["num_samples"] for k in f["data"])


def test_round_trip_matches_a_fresh_rollout(dataset_dir):
    with DemoDataset(dataset_dir) as ds:
        assert len(ds) == 6
        ep = ds.episode(3)  # second task, first episode
        assert ep.task == "open_drawer_then_push_red" and ep.seed == 0 and not ep.perturbed
        assert ep.success
        again = rollout(ep.task, ep.seed, "train", 64)
        np.testing.assert_array_equal(ep.images, np.asarray(again["obs"]["image"]))
        np.testing.assert_allclose(ep.actions, np.asarray(again["actions"]), atol=1e-7)
        assert ep.captions == again["captions"]
        assert [ds.episode(i).perturbed for i in range(6)] == [False, False, True] * 2
        assert [ds.episode(i).noise_std for i in range(3)] == [0.0, 0.0, 0.3]  # RecordConfig.noise_std


def test_next_event_samples(dataset_dir):
    with DemoDataset(dataset_dir) as ds:
        samples = list(ds.next_event_samples(context_frames=4, future_frames=8))
        chained = [s for s in samples if s.task == "open_drawer_then_push_red" and s.episode == 3]
        assert [s.event for s in chained] == ["reach_drawer_handle", "pull_drawer", "reach_red_button", "press_red_button"]
        s = chained[2]
        assert s.context.shape == (4, 64, 64, 3) and s.frames.shape == (8, 64, 64, 3)
        assert s.actions.shape == (8, 4) and s.action_mask.all()
        assert "red button" in s.caption and s.instruction.startswith("open the drawer")
        ep = ds.episode(3)
        np.testing.assert_array_equal(s.context[-1], ep.images[s.step])
        np.testing.assert_array_equal(s.frames[0], ep.images[s.step + 1])
        every = list(ds.next_event_samples(every=10, include_perturbed=True))
        assert len(every) > len(samples)


def test_resume_after_interruption(tmp_path):
    out = tmp_path / "rec"
    out.mkdir()
    (out / RECORD_ARGS).write_text(json.dumps({**CONFIG.__dict__, "tasks": list(CONFIG.tasks)}))
    (out / "shards").mkdir()
    plan = CONFIG.episode_plan()
    _record_shard((CONFIG, str(out), 0, [(i, *plan[i]) for i in range(2)]))  # one shard done, then "killed"
    (out / "shards" / "shard-00001.tmp").write_bytes(b"half written")  # a shard cut off mid-write
    summary = record(CONFIG, out, progress=False)
    assert summary["resumed"] is True and summary["episodes"] == 6
    assert not (out / "shards").exists()
    assert record(CONFIG, out, progress=False)["already_complete"] is True


def test_shadows_are_recorded_in_the_env_kwargs(tmp_path, dataset_dir):
    shadowed = RecordConfig(tasks=("push_red",), episodes=1, shadows=True)
    record(shadowed, tmp_path / "shadowed", progress=False)
    with DemoDataset(tmp_path / "shadowed") as ds, DemoDataset(dataset_dir) as plain:
        assert ds.shadows is True and ds.env_args["env_kwargs"]["shadows"] is True
        assert plain.shadows is False
        # the same seed, the same expert, so the same first frame but for the shadows on the desk
        assert not np.array_equal(ds.episode(0).images[0], plain.episode(0).images[0])
        np.testing.assert_array_equal(ds.episode(0).ee_pos[0], plain.episode(0).ee_pos[0])


def test_cameras_are_recorded_side_by_side_and_in_the_env_kwargs(tmp_path, dataset_dir):
    both = RecordConfig(tasks=("push_red",), episodes=1, cameras=("desk", "side"))
    record(both, tmp_path / "two", progress=False)
    with DemoDataset(tmp_path / "two") as ds, DemoDataset(dataset_dir) as plain:
        assert ds.cameras == ("desk", "side") and ds.env_args["env_kwargs"]["cameras"] == ["desk", "side"]
        assert plain.cameras == ("desk",) and plain.scene_kwargs == {"shadows": False, "cameras": ("desk",)}
        wide, square = ds.episode(0).images, plain.episode(0).images
        assert wide.shape[1:] == (64, 128, 3) and square.shape[1:] == (64, 64, 3)
        # the same seed and expert: the desk view is the plain recording's, the side view is another picture
        np.testing.assert_array_equal(wide[:, :, :64], square)
        assert np.abs(wide[0, :, 64:].astype(int) - square[0].astype(int)).mean() > 10
    with pytest.raises(ValueError, match="cameras must be distinct names"):
        RecordConfig(tasks=("push_red",), episodes=1, cameras=("desk", "top"))


def test_a_recording_from_before_a_setting_existed_resumes(tmp_path):
    out = tmp_path / "rec"
    out.mkdir()
    previous = {**CONFIG.__dict__, "tasks": list(CONFIG.tasks)}
    del previous["shadows"], previous["cameras"]  # record_args.json as written before these were settings
    (out / RECORD_ARGS).write_text(json.dumps(previous))
    assert record(CONFIG, out, progress=False)["episodes"] == 6
    with pytest.raises(ValueError, match="other settings"):
        record(RecordConfig(**{**CONFIG.__dict__, "shadows": True}), out, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        record(RecordConfig(**{**CONFIG.__dict__, "cameras": ("desk", "side")}), out, progress=False)


def test_other_settings_are_refused(dataset_dir):
    other = RecordConfig(tasks=("push_red",), episodes=1)
    with pytest.raises(ValueError, match="other settings"):
        record(other, dataset_dir, progress=False)


def test_corrupt_and_truncated_files_are_named(tmp_path, dataset_dir):
    garbage = tmp_path / "garbage.hdf5"
    garbage.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(DatasetError, match="garbage.hdf5"):
        DemoDataset(garbage)
    truncated = tmp_path / "truncated.hdf5"
    data = (dataset_dir / "demo.hdf5").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="truncated.hdf5"):
        ds = DemoDataset(truncated)
        for i in range(len(ds)):
            ds.episode(i)
    with pytest.raises(DatasetError, match="not found"):
        DemoDataset(tmp_path / "missing.hdf5")


def test_bad_record_settings():
    with pytest.raises(ValueError, match="unknown task"):
        RecordConfig(tasks=("nope",), episodes=1)
    with pytest.raises(ValueError, match="episodes"):
        RecordConfig(tasks=("push_red",), episodes=0)
    with pytest.raises(ValueError, match="axis_speed_fraction"):
        RecordConfig(tasks=("push_red",), episodes=1, axis_speed_fraction=1.5)
    with pytest.raises(ValueError, match="min_axis_speed"):
        RecordConfig(tasks=("push_red",), episodes=1, min_axis_speed=0.0)


def test_a_share_of_episodes_moves_each_axis_at_its_own_speed(tmp_path):
    config = RecordConfig(tasks=("push_red", "lift_upright_block"), episodes=2, axis_speed_fraction=0.5,
                          perturb_fraction=0.0, min_axis_speed=0.4)
    plan = config.episode_plan()
    assert plan == config.episode_plan()  # drawn from the episode's seed: a resumed recording draws them again
    speeds = [p[3] for p in plan]
    assert speeds[0] == speeds[2] == (1.0, 1.0, 1.0)
    assert speeds[1] == speeds[3] != (1.0, 1.0, 1.0)  # same seed, same factors, whichever the task
    assert all(0.4 <= v <= 1.0 for v in speeds[1])
    record(config, tmp_path, progress=False)
    with h5py.File(tmp_path / "demo.hdf5") as f:
        for i, wanted in enumerate(speeds):
            demo = f[f"data/demo_{i}"]
            np.testing.assert_allclose(demo.attrs["axis_speeds"], wanted)
            assert demo.attrs["success"]  # the expert acts from what it sees, and still arrives
    slowed = rollout("push_red", 1, "train", 64, axis_speeds=speeds[1])
    plain = rollout("push_red", 1, "train", 64)
    assert len(slowed["actions"]) > len(plain["actions"])
    np.testing.assert_allclose(slowed["actions"][0][:3], plain["actions"][0][:3] * np.array(speeds[1]), atol=1e-6)


def test_full_speed_actions_are_the_experts_moves_from_the_slowed_episodes_states(tmp_path):
    from vans_sim.env import RoboDeskEnv
    from vans_sim.experts import ScriptedExpert

    config = RecordConfig(tasks=("push_red",), episodes=2, axis_speed_fraction=0.5, perturb_fraction=0.0)
    record(config, tmp_path, progress=False)
    with DemoDataset(tmp_path) as dataset:
        plain, slowed = dataset.episode(0), dataset.episode(1)
    assert plain.axis_speeds == (1.0, 1.0, 1.0) and slowed.axis_speeds == config.episode_plan()[1][3]
    np.testing.assert_array_equal(plain.full_speed_actions(), plain.actions)
    # Replay the slowed episode: at every state it visited, the expert at full speed does what the
    # relabelled actions say.
    env, expert = RoboDeskEnv("push_red", image_size=64, split="train"), ScriptedExpert("push_red")
    obs, _ = env.reset(seed=slowed.seed)
    full = slowed.full_speed_actions()
    for step, action in enumerate(slowed.actions):
        np.testing.assert_allclose(full[step], expert.act(obs), atol=1e-5)
        obs, *_ = env.step(action)
    assert np.abs(full[:, :3]).max() > np.abs(slowed.actions[:, :3]).max()


def test_axis_speeds_are_checked():
    from vans_sim.policies import ExpertPolicy

    for bad in ([1.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.5, 1.0]):
        with pytest.raises(ValueError, match="axis_speeds must be 3 factors in"):
            ExpertPolicy("push_red", 1, axis_speeds=bad)
