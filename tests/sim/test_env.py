import gymnasium as gym
import numpy as np
import pytest

import vans_sim
from vans_sim.env import RoboDeskEnv
from vans_sim.state import OBJECT_STATE_DIM


def rollout_images(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, *_ = env.step(a)
        out.append(obs)
    return out


def test_registered_gym_id_and_spaces():
    env = gym.make(vans_sim.ENV_ID, task="push_red", image_size=64, split="train")
    obs, info = env.reset(seed=0)
    assert env.action_space.shape == (4,)
    assert float(env.action_space.low.min()) == -1.0 and float(env.action_space.high.max()) == 1.0
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    assert obs["ee_pos"].shape == (3,) and obs["gripper"].shape == (1,)
    assert obs["object_state"].shape == (OBJECT_STATE_DIM,)
    assert env.observation_space.contains(obs)
    assert info["instruction"] == "push the red button"
    assert info["event"] == "reach_red_button" and info["success"] is False
    assert info["caption"] in vans_sim.get_task("push_red").events[0].captions
    env.close()


@pytest.mark.parametrize("size", [64, 128, 256])
def test_native_image_sizes(size):
    env = RoboDeskEnv("open_slide", image_size=size)
    obs, _ = env.reset(seed=1)
    assert obs["image"].shape == (size, size, 3)
    assert obs["image"].std() > 10  # a real scene, not a blank buffer
    env.close()


def test_no_render_without_image():
    env = RoboDeskEnv("push_blue", observe_image=False)
    obs, _ = env.reset(seed=0)
    env.step(np.zeros(4))
    assert "image" not in obs and env._renderer is None
    assert "image" not in env.observation_space.spaces


def test_reset_is_deterministic():
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (15, 4))
    a = rollout_images(RoboDeskEnv("stack", split="heldout"), 7, actions)
    b = rollout_images(RoboDeskEnv("stack", split="heldout"), 7, actions)
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    c = rollout_images(RoboDeskEnv("stack", split="heldout"), 8, actions)
    assert not np.array_equal(a[0]["object_state"], c[0]["object_state"])


def test_truncation_at_max_episode_steps():
    env = RoboDeskEnv("open_drawer", observe_image=False, max_episode_steps=5)
    env.reset(seed=0)
    flags = [env.step(np.zeros(4))[3] for _ in range(5)]
    assert flags == [False] * 4 + [True]


def test_gripper_moves_with_deltas():
    env = RoboDeskEnv("push_red", observe_image=False)
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        new, *_ = env.step(np.array([1.0, 0, 0, 0]))
    assert new["ee_pos"][0] - obs["ee_pos"][0] == pytest.approx(0.1, abs=0.02)
    closed, *_ = env.step(np.array([0, 0, 0, 1.0]))
    for _ in range(5):
        closed, *_ = env.step(np.array([0, 0, 0, 1.0]))
    assert closed["gripper"][0] < 0.1


@pytest.mark.parametrize("kwargs, match", [
    ({"task": "fly_away"}, "unknown task 'fly_away'"),
    ({"image_size": 100}, "image_size must be one of"),
    ({"split": "test"}, "split must be one of"),
    ({"render_mode": "human"}, "render_mode"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RoboDeskEnv(**kwargs)


@pytest.mark.parametrize("action, match", [
    ([np.nan, 0, 0, 0], "NaN"),
    ([0, 0, 2.0, 0], "out of range"),
    ([0, 0, 0], "shape"),
])
def test_bad_actions(action, match):
    env = RoboDeskEnv("push_red", observe_image=False)
    env.reset(seed=0)
    before = env.data.qpos.copy()
    with pytest.raises(ValueError, match=match):
        env.step(np.array(action))
    np.testing.assert_array_equal(before, env.data.qpos)  # nothing happened
    env.step(np.zeros(4))  # and the env still works


def test_shadows_mark_the_desk_below_the_gripper():
    plain, shadowed = RoboDeskEnv("push_red"), RoboDeskEnv("push_red", shadows=True)
    a, _ = plain.reset(seed=3)
    b, _ = shadowed.reset(seed=3)
    np.testing.assert_array_equal(a["ee_pos"], b["ee_pos"])  # the same physics, another picture
    darker = a["image"].astype(int).sum(-1) - b["image"].astype(int).sum(-1)
    # the sun's shadows darken (a pixel or two on an edge may come out lighter), and they fall on
    # patches of the desk, not over the whole frame
    assert (darker > 30).sum() > 20 * (darker < -30).sum() and 10 < (darker > 30).sum() < 64 * 64 // 4
    # the gripper's shadow moves with the gripper along the camera's line of sight
    for _ in range(8):
        a, *_ = plain.step(np.array([0, 1, 0, 0]))
        b, *_ = shadowed.step(np.array([0, 1, 0, 0]))
    moved = a["image"].astype(int).sum(-1) - b["image"].astype(int).sum(-1)
    assert not np.array_equal(moved > 30, darker > 30)
    plain.close()
    shadowed.close()


def test_the_side_camera_shows_the_desk_cameras_depth_axis():
    """With cameras=("desk", "side") the image is both views side by side, the desk view exactly the
    one-camera image. In the side view a move towards the desk camera (-y) shifts the gripper across
    the picture and a move down shifts it straight down: the two motions the desk camera confuses
    change pixels in different directions there."""
    one, two = RoboDeskEnv("push_red"), RoboDeskEnv("push_red", cameras=("desk", "side"))
    assert two.observation_space["image"].shape == (64, 128, 3)
    a, _ = one.reset(seed=3)
    b, _ = two.reset(seed=3)
    np.testing.assert_array_equal(b["image"][:, :64], a["image"])
    start = b["image"].astype(int)
    columns = {}
    for name, action in (("towards", [0, -1, 0, 0]), ("down", [0, 0, -1, 0])):
        b, _ = two.reset(seed=3)
        for _ in range(5):
            b, *_ = two.step(np.array(action, float))
        rows, cols = np.nonzero(np.abs(b["image"][:, 64:].astype(int) - start[:, 64:]).sum(-1) > 40)
        assert len(rows) > 20, name  # the gripper moved in the side view
        columns[name] = np.ptp(cols)
    assert columns["down"] <= 3 and columns["towards"] >= 5, columns
    with pytest.raises(ValueError, match="cameras must be distinct names from \\('desk', 'side'\\)"):
        RoboDeskEnv("push_red", cameras=("desk", "desk"))
    with pytest.raises(ValueError, match="cameras"):
        RoboDeskEnv("push_red", cameras=())
    one.close()
    two.close()


def test_a_tool_pushed_into_the_desk_counts_as_blocked():
    from vans_sim.score import blocked_steps

    env = RoboDeskEnv("push_red", image_size=64, split="train", observe_image=False)
    obs, _ = env.reset(seed=0)
    down, flags = np.array([0.0, 0.0, -1.0, 0.0], np.float32), []
    for _ in range(60):
        before = obs["ee_pos"].copy()
        obs, *_ = env.step(down)
        flags.append(bool(blocked_steps(down[None], before[None], obs["ee_pos"][None])[0]))
    env.close()
    first = flags.index(True)
    assert first > 3 and all(flags[first + 2:])  # free fall first, then held by the desk every step
    # a command too small to count, and a command the tool follows, are not blocked
    still, free = np.zeros((1, 3)), np.array([[0.0, 0.0, 0.02]])
    assert not blocked_steps(np.array([[0.1, 0, 0, 0]]), still, still)[0]
    assert not blocked_steps(np.array([[0, 0, 1.0, 0]]), still, free)[0]


def test_the_desk_image_projection_lands_on_the_rendered_objects():
    """``project_to_desk_image`` puts each button and each object on pixels of its own colour in the
    rendered 64-pixel frame, wherever a reset placed the objects."""
    from vans_sim.scene import BUTTONS, DESK_TOP, project_to_desk_image

    env = RoboDeskEnv(task="push_red", split="heldout")
    try:
        for seed in (0, 1):
            obs, _ = env.reset(seed=seed)
            image = obs["image"].astype(float)
            places = {colour: (*BUTTONS[colour], DESK_TOP + 0.02) for colour in BUTTONS}
            places.update({name: env.unwrapped.data.body(name).xpos.copy() for name in ("upright_block", "flat_block")})
            for name, point in places.items():
                x, y = ((project_to_desk_image(np.array(point)) + 1) / 2 * 64).astype(int)
                pixel = image[y, x]
                expected = {"red": 0, "green": 1, "blue": 2}.get(name)
                if expected is not None:  # a button: its own channel stands out
                    assert pixel[expected] > pixel.sum() - pixel[expected], (name, seed, pixel)
                else:  # a block: not the desk's colour at the projected place
                    desk = image[y, min(x + 12, 63)] if x < 52 else image[y, x - 12]
                    assert np.abs(pixel - desk).sum() > 30, (name, seed, pixel, desk)
    finally:
        env.close()
    with pytest.raises(ValueError, match=r"points must have shape \(..., 3\)"):
        project_to_desk_image(np.zeros((2, 2)))
