"""The planner end to end on the tiny checkpoint: backends, parity, checkpoints, bad input."""

import json
import shutil

import numpy as np
import pytest

from vans_engine.backends import tensorrt_available
from vans_engine.checkpoint import CheckpointError, write_model_index
from vans_engine.planner import Planner, PlannerConfig
from vans_engine.testing import tiny_checkpoint

INSTRUCTION = "push the red button"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt")


@pytest.fixture(scope="module")
def torch_planner(checkpoint):
    return Planner.from_pretrained(checkpoint, backend="torch")


@pytest.fixture(scope="module")
def ort_planner(checkpoint):
    return Planner.from_pretrained(checkpoint, backend="onnxruntime")


def clip(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)


# Two proprioception states (tool point x, y, z, gripper opening) far enough apart to change the actions.
STATES = np.array([[0.1, -0.1, 0.6, 1.0], [-0.3, 0.1, 0.45, 0.0]], np.float32)


def plans_on_both_backends(checkpoint, clips):
    """The checkpoint's PyTorch and ONNX Runtime planners, and each one's plans for ``clips`` (two) with
    :data:`STATES` and the same seed: ``(torch_planner, ort_planner, ort_plans, torch_plans)``."""
    torch_planner = Planner.from_pretrained(checkpoint, backend="torch")
    ort_planner = Planner.from_pretrained(checkpoint, backend="onnxruntime")
    got, expected = (planner.plan_batch(clips, [INSTRUCTION] * len(clips), seed=0, states=STATES)
                     for planner in (ort_planner, torch_planner))
    return torch_planner, ort_planner, got, expected


def copy_of(checkpoint, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(checkpoint, target, ignore=shutil.ignore_patterns("exported"))
    return target


def test_checkpoint_index(checkpoint):
    index = json.loads((checkpoint / "model_index.json").read_text())
    assert index["trained"] is False and index["image_size"] == 64
    assert index["vdm"] == ["diffusers", "WanTransformer3DModel"]
    assert index["vlm"] == ["transformers", "Qwen2_5_VLForConditionalGeneration"]
    assert {"vdm/config.json", "idm/config.json", "vlm/tokenizer.json"} <= set(index["files"])
    assert all(len(h) == 64 for h in index["files"].values())


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_plan_shapes(backend, torch_planner, ort_planner):
    planner = torch_planner if backend == "torch" else ort_planner
    plan = planner.plan(clip(), INSTRUCTION, seed=0)
    assert isinstance(plan.caption, str)
    assert plan.frames.shape == (8, 64, 64, 3) and plan.frames.dtype == np.uint8
    assert plan.actions.shape == (8, 4) and np.abs(plan.actions).max() <= 1
    assert set(plan.timings) == {"vlm", "text", "vdm", "idm", "total"}


def test_onnxruntime_matches_pytorch(torch_planner, ort_planner):
    """Same inputs and seed: frames agree to 1/255 (one uint8 level), actions to 1e-4."""
    a = torch_planner.plan(clip(1), INSTRUCTION, seed=5, steps=3)
    b = ort_planner.plan(clip(1), INSTRUCTION, seed=5, steps=3)
    assert a.caption == b.caption
    assert np.abs(a.frames.astype(int) - b.frames).max() <= 1
    np.testing.assert_allclose(a.actions, b.actions, atol=1e-4)


def test_seed_and_samples(ort_planner):
    a = ort_planner.plan(clip(), INSTRUCTION, seed=7)
    b = ort_planner.plan(clip(), INSTRUCTION, seed=7)
    np.testing.assert_array_equal(a.frames, b.frames)
    many = ort_planner.plan(clip(), INSTRUCTION, num_samples=3, seed=7)
    assert len(many.alternatives) == 2
    assert not np.array_equal(many.frames, many.alternatives[0].frames)


def test_batched_planning(ort_planner):
    plans = ort_planner.plan_batch(np.stack([clip(0), clip(1), clip(2)]), [INSTRUCTION] * 3, seed=0)
    assert len(plans) == 3 and all(p.actions.shape == (8, 4) for p in plans)


def test_exports_follow_the_weights(checkpoint, tmp_path):
    from vans_engine.export import exports_are_current

    folder = copy_of(checkpoint, tmp_path)
    Planner.from_pretrained(folder, backend="onnxruntime")
    assert exports_are_current(folder)
    (folder / "idm" / "config.json").write_text((folder / "idm" / "config.json").read_text() + " ")
    assert not exports_are_current(folder)


def test_missing_file_is_named(checkpoint, tmp_path):
    folder = copy_of(checkpoint, tmp_path)
    (folder / "vdm" / "config.json").unlink()
    with pytest.raises(CheckpointError, match="vdm/config.json: missing"):
        Planner.from_pretrained(folder)


def test_wrong_hash_is_named(checkpoint, tmp_path):
    folder = copy_of(checkpoint, tmp_path)
    weights = folder / "idm" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="diffusion_pytorch_model.safetensors: sha256 mismatch"):
        Planner.from_pretrained(folder)


def test_shape_mismatch_is_named(checkpoint, tmp_path):
    folder = copy_of(checkpoint, tmp_path)
    config = json.loads((folder / "idm" / "config.json").read_text())
    config["hidden_dim"] = 32
    (folder / "idm" / "config.json").write_text(json.dumps(config))
    index = json.loads((folder / "model_index.json").read_text())
    index.pop("files")
    write_model_index(folder, index)  # hashes fine, shapes wrong
    with pytest.raises(CheckpointError, match="idm"):
        Planner.from_pretrained(folder)


def test_wrong_image_size_is_named(checkpoint, tmp_path):
    folder = copy_of(checkpoint, tmp_path)
    index = json.loads((folder / "model_index.json").read_text())
    index.pop("files")
    index["planner"]["image_size"] = 128
    write_model_index(folder, index)
    with pytest.raises(CheckpointError, match="idm/config.json: image_size 64"):
        Planner.from_pretrained(folder)


def test_an_idm_of_more_cameras_than_the_vdm_draws_is_named(checkpoint, tmp_path):
    from vans_engine.models.idm import InverseDynamicsModel

    folder = copy_of(checkpoint, tmp_path)
    settings = {k: v for k, v in json.loads((folder / "idm" / "config.json").read_text()).items() if not k.startswith("_")}
    InverseDynamicsModel(**{**settings, "cameras": ["desk", "side"]}).save_pretrained(folder / "idm")
    index = json.loads((folder / "model_index.json").read_text())
    index.pop("files")
    write_model_index(folder, index)
    with pytest.raises(CheckpointError, match=r"idm/config.json: the IDM reads the cameras \['desk', 'side'\], "
                                              r"the planner's VDM draws \['desk'\]"):
        Planner.from_pretrained(folder)


@pytest.fixture(scope="module")
def two_camera_checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny2") / "ckpt", config=PlannerConfig(cameras=("desk", "side")))


def wide_clip(seed=0):
    """A context clip of the desk and side views side by side, (4, 64, 128, 3)."""
    return np.random.default_rng(seed).integers(0, 256, (4, 64, 128, 3), dtype=np.uint8)


def test_a_two_camera_planner_draws_and_reads_both_views(two_camera_checkpoint):
    """The VDM draws 64x128 frames, the ONNX graphs take them and agree with PyTorch; the VLM reads
    the desk view alone, so a different side view leaves the caption as it was; a square clip is
    refused with the cameras named."""
    index = json.loads((two_camera_checkpoint / "model_index.json").read_text())
    assert index["planner"]["cameras"] == ["desk", "side"]
    eager = Planner.from_pretrained(two_camera_checkpoint, backend="torch")
    ort = Planner.from_pretrained(two_camera_checkpoint, backend="onnxruntime")
    assert eager.config.frame_size == (64, 128)
    a = eager.plan(wide_clip(1), INSTRUCTION, seed=5, steps=2)
    b = ort.plan(wide_clip(1), INSTRUCTION, seed=5, steps=2)
    assert a.frames.shape == (8, 64, 128, 3) and a.actions.shape == (8, 4)
    assert a.caption == b.caption
    assert np.abs(a.frames.astype(int) - b.frames).max() <= 1
    np.testing.assert_allclose(a.actions, b.actions, atol=1e-4)

    other_side = wide_clip(1)
    other_side[..., 64:, :] = wide_clip(2)[..., 64:, :]
    c = eager.plan(other_side, INSTRUCTION, seed=5, steps=2)
    assert c.caption == a.caption
    assert not np.array_equal(c.frames[..., 64:, :], a.frames[..., 64:, :])  # the VDM reads the side view

    with pytest.raises(ValueError, match=r"\(B, 4, 64, 128, 3\) \(the cameras desk, side side by side\)"):
        eager.plan(clip(), INSTRUCTION)


def test_planner_cameras_are_checked():
    with pytest.raises(ValueError, match="distinct camera names"):
        PlannerConfig(cameras=("desk", "desk"))
    with pytest.raises(ValueError, match="distinct camera names"):
        PlannerConfig(cameras=())


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        Planner.from_pretrained(tmp_path / "nothing")
    (tmp_path / "model_index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt JSON"):
        Planner.from_pretrained(tmp_path)


@pytest.mark.parametrize("frames, message", [
    (np.zeros((4, 32, 32, 3), np.uint8), "shape"),
    (np.zeros((4, 64, 64, 3), np.int32), "dtype"),
    (np.full((4, 64, 64, 3), np.nan, np.float32), "NaN"),
    (np.zeros((64, 64, 3), np.uint8), "frames must be"),
])
def test_bad_frames(ort_planner, frames, message):
    with pytest.raises(ValueError, match=message):
        ort_planner.plan(frames, INSTRUCTION)


def test_bad_instructions(ort_planner):
    with pytest.raises(ValueError, match="non-empty"):
        ort_planner.plan(clip(), "")
    with pytest.warns(UserWarning, match="truncated"):
        ort_planner.plan(clip(), "push the red button and then " * 20)


def test_tensorrt_backend(checkpoint):
    ok, why = tensorrt_available()
    if not ok:
        pytest.skip(f"TensorRT cannot run here: {why}")
    planner = Planner.from_pretrained(checkpoint, backend="tensorrt", device="cuda")
    assert planner.plan(clip(), INSTRUCTION, seed=0).actions.shape == (8, 4)


def test_graphed_caption_decoder_in_the_planner(checkpoint):
    """The decoder the planner uses on CUDA (its eager loop here): same greedy caption; samples still work."""
    planner = Planner.from_pretrained(checkpoint, backend="torch")
    reference = planner.plan(clip(), INSTRUCTION, seed=0).caption
    planner.caption_cache = "graphed"
    assert planner.plan(clip(), INSTRUCTION, seed=0).caption == reference
    assert len(planner.plan(clip(), INSTRUCTION, num_samples=3, seed=0).alternatives) == 2


@pytest.fixture(scope="module")
def state_checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny_state") / "ckpt", idm_state=True)


def test_proprioception_reaches_the_actions_on_both_backends(state_checkpoint):
    """A checkpoint whose IDM reads proprioception: the state changes the actions, ONNX Runtime
    matches PyTorch with it, and planning without it (or with a bad one) is a clear error."""
    torch_planner, ort_planner, got, expected = plans_on_both_backends(state_checkpoint, np.stack([clip(0), clip(0)]))
    assert ort_planner.needs_state and torch_planner.needs_state
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g.actions, e.actions, atol=1e-4)
    one, other = (ort_planner.plan(clip(0), INSTRUCTION, seed=0, state=state) for state in STATES)
    np.testing.assert_array_equal(one.frames, other.frames)  # same clip and seed, same video ...
    assert np.abs(one.actions - other.actions).max() > 1e-3  # ... other state, other actions
    with pytest.raises(ValueError, match="reads proprioception"):
        ort_planner.plan(clip(), INSTRUCTION)
    with pytest.raises(ValueError, match="states must have shape"):
        ort_planner.plan(clip(), INSTRUCTION, state=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        ort_planner.plan(clip(), INSTRUCTION, state=np.array([0, np.nan, 0, 0], np.float32))


def test_a_vlm_that_reads_proprioception_makes_the_planner_need_it(tmp_path):
    """The IDM reads no state here, the VLM does: the planner asks for the state and writes it into
    the VLM's prompt (the VLM's own tests show that it changes the caption's logits)."""
    planner = Planner.from_pretrained(tiny_checkpoint(tmp_path / "ckpt", vlm_state=True), backend="onnxruntime")
    assert planner.needs_state and planner.state_dim == 4 and not planner.idm.reads_state
    with pytest.raises(ValueError, match=r"this checkpoint \(its VLM\) reads proprioception"):
        planner.plan(clip(), INSTRUCTION)
    prompts, build_inputs = [], planner.vlm.build_inputs

    def recording_build_inputs(*args, **kwargs):
        inputs = build_inputs(*args, **kwargs)
        prompts.extend(planner.vlm.tokenizer.decode(ids, skip_special_tokens=True) for ids in inputs["input_ids"])
        return inputs

    planner.vlm.build_inputs = recording_build_inputs
    states = np.array([[0.55, -0.2, 0.3, 1.0], [0.7, 0.05, 0.12, 0.0]], np.float32)
    plans = planner.plan_batch(np.stack([clip(0), clip(1)]), [INSTRUCTION] * 2, seed=0, states=states)
    assert [p.caption for p in plans] == [c[0] for c in planner.vlm.generate_captions_batch(
        [clip(0), clip(1)], [INSTRUCTION] * 2, max_new_tokens=planner.config.max_caption_tokens, states=states)]
    assert prompts[0].endswith(f"{INSTRUCTION}\ntool at x 0.55 y -0.20 z 0.30, gripper 1.00\nassistant\n")
    assert prompts[1].endswith(f"{INSTRUCTION}\ntool at x 0.70 y 0.05 z 0.12, gripper 0.00\nassistant\n")


def test_a_planner_without_proprioception_ignores_a_state(ort_planner):
    assert not ort_planner.needs_state
    with_state = ort_planner.plan(clip(), INSTRUCTION, seed=0, state=np.array([0.1, 0.2, 0.5, 1.0], np.float32))
    np.testing.assert_array_equal(with_state.actions, ort_planner.plan(clip(), INSTRUCTION, seed=0).actions)


def test_motion_gain_scales_the_motion_and_leaves_the_gripper(checkpoint, ort_planner, tmp_path):
    def with_gain(gain):
        target = tmp_path / f"gain{gain}"
        shutil.copytree(checkpoint, target)
        index = json.loads((target / "model_index.json").read_text())
        index["planner"]["motion_gain"] = gain
        (target / "model_index.json").write_text(json.dumps(index))
        return target

    base = ort_planner.plan(clip(), INSTRUCTION, seed=0)
    gained = Planner.from_pretrained(with_gain(3.0), backend="onnxruntime").plan(clip(), INSTRUCTION, seed=0)
    np.testing.assert_array_equal(gained.frames, base.frames)
    np.testing.assert_allclose(gained.actions[:, :3], np.clip(3.0 * base.actions[:, :3], -1, 1), atol=1e-6)
    np.testing.assert_array_equal(gained.actions[:, 3], base.actions[:, 3])
    assert np.abs(gained.actions[:, :3]).max() <= 1
    with pytest.raises(ValueError, match="motion_gain must be > 0"):
        Planner.from_pretrained(with_gain(0.0))


@pytest.fixture(scope="module")
def feature_checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("feature") / "ckpt", feature_idm=True)


def test_an_action_head_on_the_vdms_tokens_plans_alike_on_both_backends(feature_checkpoint):
    """A checkpoint whose actions come from a VideoFeatureIDM: the exported VDM graph also gives its
    tokens, ONNX Runtime matches PyTorch, the tokens (not the pixels) and the state decide the actions."""
    import onnx

    index = json.loads((feature_checkpoint / "model_index.json").read_text())
    assert index["idm"] == ["vans_engine", "VideoFeatureIDM"]
    _, ort_planner, got, expected = plans_on_both_backends(feature_checkpoint, np.stack([clip(0), clip(1)]))
    graph = onnx.load(feature_checkpoint / "exported" / "vdm" / "model.onnx").graph
    assert [o.name for o in graph.output] == ["velocity", "vdm_features"]
    assert ort_planner.needs_state
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g.actions, e.actions, atol=1e-4)
        np.testing.assert_allclose(g.frames.astype(int), e.frames.astype(int), atol=2)
        assert g.actions.shape == (8, 4) and np.abs(g.actions).max() <= 1
    one, other = (ort_planner.plan(clip(0), INSTRUCTION, seed=0, state=state) for state in STATES)
    assert np.abs(one.actions - other.actions).max() > 1e-3
    reseeded = ort_planner.plan(clip(0), INSTRUCTION, seed=1, state=STATES[0])
    assert np.abs(one.actions - reseeded.actions).max() > 1e-4  # other noise, other first-step tokens
    with pytest.raises(ValueError, match="reads proprioception"):
        ort_planner.plan(clip(), INSTRUCTION)


def test_a_first_step_action_head_acts_alike_at_any_number_of_denoising_steps(feature_checkpoint):
    """The head reads the tokens of the first denoising step, which starts from the same noise at the same
    timestep however many steps follow: a 20-step teacher's actions cost one denoiser call, as a 2-step
    student's do, and only the drawn frames change with the steps."""
    planner = Planner.from_pretrained(feature_checkpoint, backend="torch")
    assert planner.idm.config.feature_step == 0
    plans = [planner.plan(clip(0), INSTRUCTION, seed=3, state=STATES[0], steps=steps) for steps in (1, 2, 20)]
    for plan in plans[1:]:
        np.testing.assert_array_equal(plan.actions, plans[0].actions)
    assert np.abs(plans[2].frames.astype(int) - plans[1].frames.astype(int)).max() > 0


def test_an_action_head_for_other_vdm_tokens_is_named(feature_checkpoint, tmp_path):
    from vans_engine.models.idm import VideoFeatureIDM

    target = copy_of(feature_checkpoint, tmp_path)
    config = json.loads((target / "idm" / "config.json").read_text())
    VideoFeatureIDM(**{**{k: v for k, v in config.items() if not k.startswith("_")},
                       "feature_dim": 96}).save_pretrained(target / "idm")
    write_model_index(target, json.loads((target / "model_index.json").read_text()))
    with pytest.raises(CheckpointError, match=r"idm/config.json: feature_dim 96 does not match"):
        Planner.from_pretrained(target, backend="torch")


def test_an_action_head_on_a_two_camera_vdm_reads_both_views(tmp_path):
    """A VideoFeatureIDM on the tokens of a VDM that draws the desk and side views side by side: its
    patch grid is the wide frame's, ONNX Runtime matches PyTorch, and the side view moves the actions."""
    folder = tiny_checkpoint(tmp_path / "ckpt", config=PlannerConfig(cameras=("desk", "side")), feature_idm=True)
    head = json.loads((folder / "idm" / "config.json").read_text())
    assert head["patch_grid"] == [8, 16] and head["cameras"] == ["desk", "side"]
    _, ort_planner, got, expected = plans_on_both_backends(folder, np.stack([wide_clip(0), wide_clip(1)]))
    for g, e in zip(got, expected):
        assert g.frames.shape == (8, 64, 128, 3) and g.actions.shape == (8, 4)
        np.testing.assert_allclose(g.actions, e.actions, atol=1e-4)
    other_side = wide_clip(0)
    other_side[..., 64:, :] = wide_clip(2)[..., 64:, :]
    one, other = (ort_planner.plan(c, INSTRUCTION, seed=0, state=STATES[0]) for c in (wide_clip(0), other_side))
    assert one.caption == other.caption  # the VLM reads the desk view only
    assert np.abs(one.actions - other.actions).max() > 1e-4


@pytest.mark.parametrize("latency_steps", [0, 2])
def test_planner_policy_runs_late_plans_from_the_action_due(checkpoint, latency_steps):
    """`vans-sim score --policy-option latency_steps=L`: the plan made on step s's frame runs from step
    s + L, starting at its action L; before an episode's first plan arrives the tool holds still."""
    from vans_engine.policy import PlannerPolicy

    policy = PlannerPolicy("push_red", num_envs=1, model=str(checkpoint), replan_every=4,
                           latency_steps=latency_steps)
    plans = []  # each plan_batch call's plan, as the policy got it (the real planner, recorded)
    plan_batch = policy.planner.plan_batch
    policy.planner.plan_batch = lambda *a, **kw: plans.append(plan_batch(*a, **kw)[0]) or plans[-1:]
    policy.reset(np.array([0]))
    rng = np.random.default_rng(0)
    taken = []
    for _ in range(10):
        obs = {"image": rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8),
               "ee_pos": STATES[:1, :3], "gripper": STATES[:1, 3:]}
        taken.append(policy.act(obs)[0])
    assert len(plans) == 3  # made on steps 0, 4 and 8
    expected = [np.array([0, 0, 0, -1], np.float32)] * latency_steps  # holding still, gripper open
    for plan in plans:
        expected += list(plan.actions[latency_steps:latency_steps + 4])
    np.testing.assert_allclose(np.stack(taken), np.clip(np.stack(expected[:10]), -1, 1), atol=1e-6)


def test_planner_policy_refuses_a_latency_that_leaves_too_few_actions(checkpoint):
    from vans_engine.policy import PlannerPolicy

    with pytest.raises(ValueError, match=r"latency_steps must be in \[0, 4\]"):
        PlannerPolicy("push_red", num_envs=1, model=str(checkpoint), replan_every=4, latency_steps=5)
