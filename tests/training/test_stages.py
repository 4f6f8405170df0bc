"""CPU smoke runs of every training stage on a tiny recorded dataset: the loss goes down, a killed
run resumes, a resumed run equals an uninterrupted one, and the assembled planner evaluates."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vans_training.config import (
    AlignmentConfig,
    DistillConfig,
    FeatureIDMTrainConfig,
    IDMTrainConfig,
    VDMTrainConfig,
    VLMSFTConfig,
    load_config,
)
from vans_training.stages import get_stage
from vans_training.trainer import read_log, train

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"
TINY_VLM = {"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128, "vision_hidden_size": 32,
            "vision_depth": 1}
TINY_VDM = {"num_layers": 1, "num_attention_heads": 2, "attention_head_dim": 32, "ffn_dim": 128}
COMMON = {"batch_size": 8, "warmup_steps": 0, "log_freq": 1, "eval_samples": 16, "num_threads": 2}


@pytest.fixture(scope="module")
def dataset(tiny_dataset) -> Path:
    """The shared tiny recording (``tests/conftest.py``)."""
    return tiny_dataset


def run_stage(stage: str, config_class, data: Path, out: Path, **fields):
    config = config_class(data=str(data), output_dir=str(out), **{**COMMON, **fields})
    return train(get_stage(stage), config, progress=False)


def assert_loss_goes_down(out: Path, window: int = 3) -> None:
    losses = [row["loss"] for row in read_log(out)]
    assert all(np.isfinite(losses))
    first, last = np.mean(losses[:window]), np.mean(losses[-window:])
    assert last < first, f"loss did not go down: {losses}"


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory) -> dict[str, Path]:
    """Every stage trained a few steps; the outputs are shared by the tests below."""
    root = tmp_path_factory.mktemp("runs")
    runs = {name: root / name for name in ("vlm-sft", "vdm", "distill", "idm", "alignment")}
    run_stage("vlm-sft", VLMSFTConfig, dataset, runs["vlm-sft"], max_steps=12, lr=3e-3, min_lr=3e-3,
              eval_freq=12, save_freq=12, vlm=TINY_VLM)
    run_stage("vdm", VDMTrainConfig, dataset, runs["vdm"], max_steps=12, lr=2e-3, min_lr=2e-3, eval_freq=12,
              save_freq=12, eval_steps=2, vdm=TINY_VDM, ema_decay=0.5)
    run_stage("distill", DistillConfig, dataset, runs["distill"], teacher=str(runs["vdm"]), max_steps=12,
              lr=1e-3, min_lr=1e-3, eval_freq=12, save_freq=12, num_pairs=16, pair_batch_size=8,
              teacher_steps=4, student_steps=1, real_data_fraction=0.25)
    run_stage("idm", IDMTrainConfig, dataset, runs["idm"], max_steps=12, lr=2e-3, min_lr=2e-3, eval_freq=12,
              save_freq=12, idm={"channels": [16, 32, 32, 32], "hidden_dim": 64}, frame_noise=0.0,
              photometric_jitter=0.2, random_shift=3)
    run_stage("alignment", AlignmentConfig, dataset, runs["alignment"], max_steps=12, lr=2e-3, min_lr=2e-3,
              eval_freq=12, save_freq=12, channels=[16, 16, 32, 32], embed_dim=32)
    return runs


@pytest.mark.parametrize("stage", ["vlm-sft", "vdm", "distill", "idm", "alignment"])
def test_stage_loss_goes_down_and_writes_a_model(trained, stage):
    out = trained[stage]
    assert_loss_goes_down(out)
    assert (out / "final" / "config.json").is_file()
    assert (out / "checkpoints" / "last" / "training_state.pt").is_file()
    assert list((out / "logs").glob("events.out.tfevents.*")), "no TensorBoard log"
    evaluation = read_log(out, "eval")
    assert evaluation and all(np.isfinite(v) for k, v in evaluation[-1].items() if k not in ("kind", "step"))


def test_vlm_sft_trains_a_vlm_that_reads_proprioception(dataset, tmp_path):
    from vans_engine.models.vlm import NextEventVLM

    out = run_stage("vlm-sft", VLMSFTConfig, dataset, tmp_path / "vlm-sft-state", max_steps=8, lr=3e-3, min_lr=3e-3,
                    eval_freq=8, save_freq=8, vlm=TINY_VLM, reads_state=True)
    assert_loss_goes_down(out.parent)
    vlm = NextEventVLM.from_pretrained(out)
    assert vlm.reads_state
    with pytest.raises(ValueError, match="reads proprioception"):
        vlm.generate_captions(np.zeros((4, 64, 64, 3), np.uint8), "push the red button")


def test_vlm_sft_fine_tunes_a_trained_vlm_with_its_tokenizer(trained, dataset, tmp_path):
    """``init_from`` starts from the trained VLM's weights and tokenizer (its first loss is the trained
    one's, not a fresh model's), and refuses a VLM that reads another prompt."""
    from vans_engine.models.vlm import NextEventVLM

    fresh = read_log(trained["vlm-sft"])[0]["loss"]
    out = run_stage("vlm-sft", VLMSFTConfig, dataset, tmp_path / "fine-tuned", max_steps=4, lr=1e-4, min_lr=1e-4,
                    eval_freq=4, save_freq=4, init_from=str(trained["vlm-sft"]))
    first = read_log(out.parent)[0]["loss"]
    assert first < 0.9 * fresh
    started = NextEventVLM.from_pretrained(trained["vlm-sft"] / "final")
    assert NextEventVLM.from_pretrained(out).tokenizer.get_vocab() == started.tokenizer.get_vocab()
    with pytest.raises(ValueError, match="reads_state is True but the VLM at .* was trained with reads_state False"):
        run_stage("vlm-sft", VLMSFTConfig, dataset, tmp_path / "refused", max_steps=1,
                  init_from=str(trained["vlm-sft"]), reads_state=True)


def test_curves_draw_training_and_evaluation_scalars(trained, tmp_path):
    from PIL import Image

    from vans_training.curves import plot_curves

    for keys in (("loss",), ("loss", "psnr")):  # psnr is logged by evaluations only
        out = plot_curves([trained["vdm"], trained["distill"]], tmp_path / f"{len(keys)}.png", keys=keys)
        assert Image.open(out).size[0] > 0
    with pytest.raises(FileNotFoundError, match="no log.jsonl"):
        plot_curves([tmp_path], tmp_path / "none.png")


def test_distill_made_reflow_pairs_and_compares_with_the_teacher(trained):
    chunks = sorted((trained["distill"] / "reflow").glob("chunk_*.pt"))
    assert len(chunks) == 2 and torch.load(chunks[0]).shape == (8, 3, 8, 64, 64)
    last = read_log(trained["distill"], "eval")[-1]
    assert {"psnr_student_1_steps", "psnr_teacher_1_steps", "psnr_teacher_4_steps"} <= set(last)


def test_idm_fine_tunes_from_given_weights(trained, dataset, tmp_path):
    from safetensors.torch import load_file

    tuned = run_stage("idm", IDMTrainConfig, dataset, tmp_path / "tuned", max_steps=1, lr=1e-12, min_lr=1e-12,
                      eval_freq=1, save_freq=1, init_from=str(trained["idm"]))
    start = load_file(trained["idm"] / "final" / "diffusion_pytorch_model.safetensors")
    for key, value in load_file(tuned / "diffusion_pytorch_model.safetensors").items():
        torch.testing.assert_close(value, start[key], rtol=0, atol=1e-6, msg=key)


def test_idm_gains_proprioception_from_given_weights(trained, dataset, tmp_path):
    """init_from plus idm.chunk_state: the new input starts at zero, so step 0 is the started IDM; the
    data's state statistics land in the config; training moves the new input; the stage scores the
    chunk head with the state; an architecture change that is not the identity at start is refused."""
    from vans_engine.models.idm import InverseDynamicsModel
    from vans_training.stages.idm import build_idm

    config = IDMTrainConfig(data=str(dataset), output_dir=str(tmp_path / "state"), init_from=str(trained["idm"]),
                            idm={"chunk_state": True}, **{**COMMON, "eval_samples": 8})
    stage = get_stage("idm")(config, torch.device("cpu"))
    start = InverseDynamicsModel.from_pretrained(trained["idm"] / "final").eval()
    frames, state = torch.rand(2, 9, 3, 64, 64) * 2 - 1, torch.rand(2, 4)
    torch.testing.assert_close(stage.idm.eval()(frames, state), start(frames), rtol=0, atol=0)
    np.testing.assert_allclose(stage.idm.config.state_mean, stage.train_data.state.mean(axis=0), rtol=1e-5)
    tuned = train(get_stage("idm"), dataclasses.replace(config, max_steps=4, lr=2e-3, min_lr=2e-3, eval_freq=4,
                                                        save_freq=4), progress=False)
    idm = InverseDynamicsModel.from_pretrained(tuned)
    assert idm.reads_state and idm.chunk_state_proj.weight.abs().max() > 0
    assert "chunk_mse" in read_log(tmp_path / "state", kind="eval")[-1]
    with pytest.raises(ValueError, match="does not fit"):
        build_idm(dataclasses.replace(config, idm={"hidden_dim": 32}), stage.train_data.state)


def test_idm_reads_the_cameras_of_its_recording(trained, tmp_path):
    """On a recording of two cameras the IDM is built for frames of both views side by side, trains
    with each view shifted on its own, and saves its cameras; a one-camera IDM cannot start there."""
    from vans_engine.models.idm import InverseDynamicsModel

    data = tmp_path / "two-cameras"
    subprocess.run([sys.executable, "-m", "vans_sim.cli", "record", "--tasks", "push_red", "--episodes", "10",
                    "--cameras", "desk,side", "--out", str(data), "--quiet"], check=True)
    out = run_stage("idm", IDMTrainConfig, data, tmp_path / "idm", max_steps=10, lr=2e-3, min_lr=2e-3,
                    eval_freq=10, save_freq=10, idm={"channels": [16, 32, 32, 32], "hidden_dim": 64,
                                                     "pooling": "mean_max"}, random_shift=3)
    assert_loss_goes_down(tmp_path / "idm")
    idm = InverseDynamicsModel.from_pretrained(out).eval()
    assert tuple(idm.config.cameras) == ("desk", "side") and idm.frame_shape == (64, 128)
    assert idm(torch.rand(2, 9, 3, 64, 128) * 2 - 1).shape == (2, 8, 4)
    with pytest.raises(ValueError, match="reads the cameras"):
        run_stage("idm", IDMTrainConfig, data, tmp_path / "from-one-camera", max_steps=2,
                  init_from=str(trained["idm"]))

    # a one-camera IDM gains the side view: it starts out reading the desk view exactly as before
    from vans_training.data import NextEventData
    from vans_training.stages.idm import build_idm

    config = IDMTrainConfig(data=str(data), init_from=str(trained["idm"]), idm={"cameras": ["desk", "side"]})
    widened = build_idm(config, NextEventData(data, "train", context_frames=1).state, ("desk", "side")).eval()
    start = InverseDynamicsModel.from_pretrained(trained["idm"] / "final").eval()
    frames = torch.rand(2, 9, 3, 64, 128) * 2 - 1
    torch.testing.assert_close(widened(frames), start(frames[..., :64]), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="may only add views after them"):
        build_idm(dataclasses.replace(config, idm={"cameras": ["side", "desk"]}), np.zeros((1, 4)), ("side", "desk"))

    # a VDM draws both views through that IDM, and its evaluations say what each drawn view costs
    config = VDMTrainConfig(data=str(data), output_dir=str(tmp_path / "vdm"),
                            **{**COMMON, "max_steps": 2, "eval_freq": 2, "save_freq": 2, "eval_steps": 1,
                               "vdm": TINY_VDM, "action_model": str(out), "action_weight": 1.0})
    stage = get_stage("vdm")(config, torch.device("cpu"))
    batch = stage.valid_data.batch(stage.valid_data.fixed_indices(4))
    desk_held = batch.future.copy()  # the desk view drawn as a still frame, the side view as recorded
    desk_held[..., :64, :] = batch.context[:, -1:, :, :64]
    scores = stage.action_scores(batch, desk_held)
    assert scores["action_mse_drawn_desk"] == scores["action_mse"] != scores["action_mse_recorded"]
    assert scores["action_mse_drawn_side"] == scores["action_mse_recorded"]
    train(get_stage("vdm"), config, progress=False)
    last = read_log(tmp_path / "vdm", "eval")[-1]
    assert {"psnr_desk", "psnr_side", "action_mse_drawn_desk", "action_mse_drawn_side"} <= set(last)
    assert all(np.isfinite(last[key]) for key in ("psnr_desk", "psnr_side", "action_mse_drawn_side"))


def test_idm_regression_head_splits_into_a_mixture(trained, dataset, tmp_path):
    """init_from plus idm.chunk_modes: every mode starts at the regression head's chunk, a little apart;
    training by likelihood lowers the loss and the saved mixture loads and acts."""
    from vans_engine.models.idm import InverseDynamicsModel

    config = IDMTrainConfig(data=str(dataset), output_dir=str(tmp_path / "mixture"), init_from=str(trained["idm"]),
                            idm={"chunk_modes": 3}, **{**COMMON, "eval_samples": 8})
    stage = get_stage("idm")(config, torch.device("cpu"))
    start = InverseDynamicsModel.from_pretrained(trained["idm"] / "final").eval()
    frames = torch.rand(2, 9, 3, 64, 64) * 2 - 1
    _, means, log_std = stage.idm.eval().chunk_mixture(frames)
    for mode in range(3):
        torch.testing.assert_close(means[:, :, mode], start(frames), rtol=0, atol=0.25)  # noise std 0.05
    assert (means[:, :, 0] - means[:, :, 1]).abs().max() > 1e-4
    torch.testing.assert_close(log_std.exp(), torch.full_like(log_std, 0.3))
    tuned = train(get_stage("idm"), dataclasses.replace(config, max_steps=6, lr=2e-3, min_lr=2e-3, eval_freq=6,
                                                        save_freq=6), progress=False)
    assert_loss_goes_down(tmp_path / "mixture")
    assert {"chunk_nll", "chunk_mse"} <= set(read_log(tmp_path / "mixture")[-1])
    idm = InverseDynamicsModel.from_pretrained(tuned).eval()
    assert idm.config.chunk_modes == 3 and idm(frames).shape == (2, 8, 4)


def test_idm_random_shift_moves_every_frame_of_a_clip_alike():
    from vans_training.augment import shift_clips

    frames = torch.full((6, 3, 3, 16, 16), -1.0)
    for t in range(3):  # one bright pixel per frame, moving one column a frame
        frames[:, t, :, 8, 5 + t] = 1.0
    shifted = shift_clips(frames, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == frames.shape
    offsets = set()
    for clip in shifted:
        spots = [tuple(int(v) for v in (frame[0] == 1.0).nonzero()[0]) for frame in clip]
        dy, dx = spots[0][0] - 8, spots[0][1] - 5
        assert abs(dy) <= 2 and abs(dx) <= 2
        assert spots == [(8 + dy, 5 + t + dx) for t in range(3)], spots  # the whole clip moved alike
        offsets.add((dy, dx))
    assert len(offsets) > 1  # clips draw their own offsets
    torch.testing.assert_close(shift_clips(frames, 0, torch.Generator()), frames)
    with pytest.raises(ValueError, match="random_shift"):
        IDMTrainConfig(random_shift=32)


def test_random_shift_moves_each_view_on_its_own():
    """Two 16-pixel views side by side, each a bright column: each view moves by its own offset, its
    edges replicated from itself, so that no pixel of one view shows in the other."""
    from vans_training.augment import shift_clips

    frames = torch.full((8, 2, 3, 16, 32), -1.0)
    frames[..., 16:] = 0.0  # the second view is grey
    frames[..., 7] = 1.0
    frames[..., 16 + 9] = 1.0
    shifted = shift_clips(frames, 3, torch.Generator().manual_seed(0), views=2)
    columns = set()
    for clip in shifted:
        left, right = clip[..., :16], clip[..., 16:]
        assert set(left.unique().tolist()) == {-1.0, 1.0} and set(right.unique().tolist()) == {0.0, 1.0}
        columns.add((int(left[0, 0, 8].argmax()) - 7, int(right[0, 0, 8].argmax()) - 9))
    assert any(a != b for a, b in columns)  # the views draw their own offsets
    with pytest.raises(ValueError, match="2 square views"):
        shift_clips(torch.zeros(1, 2, 3, 16, 24), 2, torch.Generator(), views=2)


def test_idm_dagger_round_adds_expert_branches_on_train_scenes(dataset, tmp_path):
    from vans_engine.models.idm import InverseDynamicsModel
    from vans_engine.testing import tiny_checkpoint
    from vans_sim.env import RoboDeskEnv

    from vans_training.data import NextEventData
    from vans_training.dagger import record_dagger

    torch.manual_seed(0)
    InverseDynamicsModel(channels=(16, 16, 16, 16), hidden_dim=32).save_pretrained(tmp_path / "idm")
    stats = record_dagger(tmp_path / "idm", dataset, tmp_path / "dagger", seed_start=1008, episodes_per_task=1,
                          tasks=["push_red"], max_episode_steps=12, progress=False)
    assert stats == {"branches": 3, "steps": 36, "successes": 0, "episodes": 1}  # a plan every K / 2 = 4 steps
    kwargs = dict(context_frames=1, anchor_every=2, successful_only=False)
    base, extended = (NextEventData(path, "train", include_perturbed=True, **kwargs)
                      for path in (dataset, tmp_path / "dagger"))
    assert len(extended) == len(base) + 3 * 6 and extended.seeds[-1] == 1010  # seeds 1008 and 1009 are valid/test
    assert len(NextEventData(tmp_path / "dagger", "valid", **kwargs)) == len(NextEventData(dataset, "valid", **kwargs))
    assert len(NextEventData(tmp_path / "dagger", "train", **kwargs)) == len(NextEventData(dataset, "train", **kwargs))
    # the VDM's reading (expert_branches): the successful expert episodes and the branches, no noisy episode
    expert = dict(context_frames=1, anchor_every=2)
    with_branches = NextEventData(tmp_path / "dagger", "train", expert_branches=True, **expert)
    assert len(with_branches) == len(NextEventData(dataset, "train", **expert)) + 3 * 6
    assert with_branches.seeds[-1] == 1010
    vlm_config = VLMSFTConfig(data=str(tmp_path / "dagger"), expert_branches=True, context_frames=1, anchor_every=2,
                              vlm=TINY_VLM)  # the VLM reads them too, captioned with the event in progress
    assert len(get_stage("vlm-sft")(vlm_config, torch.device("cpu")).train_data) == len(with_branches)
    # and so does the action head on the VDM's tokens, with its planner's four context frames
    feature_config = FeatureIDMTrainConfig(data=str(tmp_path / "dagger"), expert_branches=True, anchor_every=2,
                                           vdm_model=str(tiny_checkpoint(tmp_path / "planner")))
    branches_read = len(get_stage("feature-idm")(feature_config, torch.device("cpu")).train_data)
    assert branches_read == len(NextEventData(tmp_path / "dagger", "train", expert_branches=True, anchor_every=2))
    assert branches_read > len(NextEventData(dataset, "train", anchor_every=2))
    first = extended.batch(np.array([len(base)]))  # the first branch starts at the episode's reset
    env = RoboDeskEnv("push_red", image_size=64, split="train")
    np.testing.assert_array_equal(first.context[0, -1], env.reset(seed=1010)[0]["image"])
    env.close()


def test_feature_idm_learns_full_speed_actions_on_slowed_episodes(tmp_path):
    from vans_engine.testing import tiny_checkpoint
    from vans_sim.dataset import DemoDataset
    from vans_sim.record import RecordConfig, record

    from vans_training.data import NextEventData

    # seeds 0-7 are the train split and 8 the valid one; every other episode moves its axes at their own speeds
    record(RecordConfig(tasks=("push_red",), episodes=9, axis_speed_fraction=0.5, perturb_fraction=0.0),
           tmp_path / "data", progress=False)
    with DemoDataset(tmp_path / "data") as dataset:
        episodes = list(dataset.episodes())
    assert [ep.axis_speeds != (1.0, 1.0, 1.0) for ep in episodes] == [i % 2 == 1 for i in range(9)]
    slowed, full = (NextEventData(tmp_path / "data", "all", full_speed_actions=flag) for flag in (False, True))
    np.testing.assert_array_equal(slowed.actions, np.concatenate([ep.actions for ep in episodes]))
    np.testing.assert_array_equal(full.actions, np.concatenate([ep.full_speed_actions() for ep in episodes]))
    config = FeatureIDMTrainConfig(data=str(tmp_path / "data"), full_speed_actions=True, anchor_every=2,
                                   vdm_model=str(tiny_checkpoint(tmp_path / "planner")))
    stage = get_stage("feature-idm")(config, torch.device("cpu"))
    np.testing.assert_array_equal(stage.train_data.actions, NextEventData(
        tmp_path / "data", "train", full_speed_actions=True).actions)


@pytest.mark.parametrize("scene", [{"shadows": True}, {"cameras": ("desk", "side")}], ids=["shadows", "cameras"])
def test_dagger_branches_render_as_the_base_recording_does(scene, tmp_path):
    from vans_engine.models.idm import InverseDynamicsModel
    from vans_sim.env import RoboDeskEnv
    from vans_sim.record import RecordConfig, record

    from vans_training.data import NextEventData
    from vans_training.dagger import record_dagger

    record(RecordConfig(tasks=("push_red",), episodes=1, **scene), tmp_path / "base", progress=False)
    InverseDynamicsModel(channels=(16, 16, 16, 16), hidden_dim=32,
                         cameras=scene.get("cameras", ("desk",))).save_pretrained(tmp_path / "idm")
    record_dagger(tmp_path / "idm", tmp_path / "base", tmp_path / "dagger", seed_start=1008, episodes_per_task=1,
                  tasks=["push_red"], max_episode_steps=4, progress=False)
    kwargs = dict(context_frames=1, anchor_every=2, successful_only=False, include_perturbed=True)
    base, extended = (NextEventData(path, "train", **kwargs) for path in (tmp_path / "base", tmp_path / "dagger"))
    first = extended.batch(np.array([len(base)]))
    for rendered_alike in (True, False):  # the branch's first frame is the base's scene, not the plain one
        env = RoboDeskEnv("push_red", image_size=64, split="train", **(scene if rendered_alike else {}))
        assert np.array_equal(first.context[0, -1], env.reset(seed=1010)[0]["image"]) is rendered_alike
        env.close()


def test_resumed_run_equals_an_uninterrupted_one(dataset, tmp_path):
    """3 steps, stop, 3 more from the checkpoint == 6 steps in one go (constant learning rate)."""
    fields = dict(lr=1e-3, min_lr=1e-3, eval_freq=100, save_freq=3, eval_steps=1, vdm=TINY_VDM, ema_decay=0.5)
    whole = run_stage("vdm", VDMTrainConfig, dataset, tmp_path / "whole", max_steps=6, **fields)
    run_stage("vdm", VDMTrainConfig, dataset, tmp_path / "split", max_steps=3, **fields)
    resumed = run_stage("vdm", VDMTrainConfig, dataset, tmp_path / "split", max_steps=6, **fields)
    from safetensors.torch import load_file

    a, b = (load_file(p / "diffusion_pytorch_model.safetensors") for p in (whole, resumed))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def test_killed_run_resumes_from_its_last_checkpoint(dataset, tmp_path, kill_at_first_checkpoint):
    out = tmp_path / "idm"
    command = [sys.executable, "-m", "vans_training.cli", "idm", "--config", str(CONFIGS / "idm.yaml"), "--quiet",
               "--set", f"data={dataset}", "--set", f"output_dir={out}", "--set", "max_steps=400",
               "--set", "save_freq=2", "--set", "eval_freq=1000", "--set", "batch_size=4",
               "--set", "idm={channels: [16, 16, 16, 16], hidden_dim: 32}"]
    checkpoint = kill_at_first_checkpoint(command, out, timeout=120)
    killed_at = int(checkpoint.name)
    finished = subprocess.run(command[:-2] + ["--set", "idm={channels: [16, 16, 16, 16], hidden_dim: 32}",
                                              "--set", f"max_steps={killed_at + 4}"],
                              capture_output=True, text=True, check=True)
    assert f"resuming idm from {checkpoint} at step {killed_at}" in finished.stdout
    steps = [row["step"] for row in read_log(out)]
    assert steps[-1] == killed_at + 4
    assert (out / "final" / "config.json").is_file()


def test_feature_idm_learns_from_the_planners_vdm_tokens_and_resumes_on_its_cache(dataset, tmp_path):
    """The action head on a planner's VDM tokens: an ensemble of two that also learns where the objects
    are (``object_weight``) and reads the current frame, recoloured, with one of its keypoints taught
    where the first object is (``frame_keypoints``, ``photometric_jitter``, ``object_keypoints``).

    The loss goes down, the tokens are computed once and cached, a second run of more steps resumes
    from the checkpoint and the cache, and the head assembles into a planner that plans from those
    tokens and the frame, alike on ONNX Runtime and PyTorch."""
    from vans_engine.planner import Planner, PlannerConfig
    from vans_engine.testing import tiny_checkpoint

    from vans_training.assemble import assemble
    from vans_training.stages.feature_idm import FEATURE_CACHE

    planner_folder = tiny_checkpoint(tmp_path / "planner", PlannerConfig(num_inference_steps=2))
    out = tmp_path / "feature-idm"
    fields = dict(vdm_model=str(planner_folder), lr=3e-3, min_lr=3e-3, eval_freq=6, save_freq=6, batch_size=16,
                  feature_batch_size=32, head={"cell_dim": 8, "hidden_dim": 32, "num_members": 2, "frame_keypoints": 2,
                        "object_keypoints": 1},
                  object_weight=1.0, photometric_jitter=0.3)
    run_stage("feature-idm", FeatureIDMTrainConfig, dataset, out, max_steps=12, **fields)
    assert_loss_goes_down(out)
    evaluation = read_log(out, "eval")
    assert evaluation and np.isfinite(evaluation[-1]["chunk_mse"])
    assert 0 < evaluation[-1]["object_rms_cm"] < 100  # three objects' offsets on a desk a metre wide
    assert 0 < evaluation[-1]["object_keypoint_px"] < 64 * 1.5  # the first object's place in the frame
    assert np.isfinite(evaluation[-1]["member_chunk_mse"])  # one member alone, beside the ensemble
    cache = torch.load(out / FEATURE_CACHE)
    assert cache["train"].dtype == torch.float16 and cache["train"].shape[1:] == (8, 4, 4, 64)
    cached_at = (out / FEATURE_CACHE).stat().st_mtime
    run_stage("feature-idm", FeatureIDMTrainConfig, dataset, out, max_steps=18, **fields)
    assert (out / FEATURE_CACHE).stat().st_mtime == cached_at  # read back, not recomputed
    assert [row["step"] for row in read_log(out)][-1] == 18

    assembled = assemble(planner_folder / "vlm", planner_folder / "vdm", out, 2, tmp_path / "assembled")
    planner = Planner.from_pretrained(assembled, backend="onnxruntime")
    assert planner.idm.reads_vdm_features and planner.needs_state and planner.idm.config.num_members == 2
    assert planner.idm.reads_current_frame
    frames = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    state = np.array([0.0, -0.1, 0.5, 1.0], np.float32)
    plan = planner.plan(frames, "push the red button", state=state, seed=0)
    assert plan.actions.shape == (8, 4) and np.isfinite(plan.actions).all()
    eager = Planner.from_pretrained(assembled, backend="torch").plan(frames, "push the red button", state=state, seed=0)
    np.testing.assert_allclose(plan.actions, eager.actions, atol=1e-4)


@pytest.fixture(scope="module")
def assembled(trained, tmp_path_factory) -> Path:
    from vans_training.assemble import assemble

    return assemble(trained["vlm-sft"], trained["distill"], trained["idm"], 1,
                    tmp_path_factory.mktemp("planner") / "planner", alignment=trained["alignment"])


def test_assembled_checkpoint_keeps_the_motion_gain(trained, tmp_path):
    from vans_engine.planner import Planner

    from vans_training.cli import main

    out = tmp_path / "gained"
    assert main(["assemble", "--vlm", str(trained["vlm-sft"]), "--vdm", str(trained["distill"]), "--idm",
                 str(trained["idm"]), "--steps", "1", "--motion-gain", "1.5", "--out", str(out)]) == 0
    assert Planner.from_pretrained(out).config.motion_gain == 1.5


def test_idm_trains_on_the_planners_generated_futures(assembled, trained, dataset, tmp_path):
    config = IDMTrainConfig(data=str(dataset), output_dir=str(tmp_path / "generated"),
                            **{**COMMON, "batch_size": 4, "eval_samples": 8}, max_steps=2, eval_freq=2, save_freq=2,
                            init_from=str(trained["idm"]), generated_future_model=str(assembled),
                            generated_future_fraction=0.5)
    stage = get_stage("idm")(config, torch.device("cpu"))
    batch = stage.valid_data.batch(np.arange(4))
    assert batch.context.shape[1] == 4  # the VDM's context, though the IDM reads only the current frame
    chosen = np.array([True, False, True, False])
    rendered = stage.render_futures(batch, chosen, seed=0)
    np.testing.assert_array_equal(rendered.future[~chosen], batch.future[~chosen])
    assert not np.array_equal(rendered.future[chosen], batch.future[chosen])
    np.testing.assert_array_equal(rendered.actions, batch.actions)  # the recorded actions stay the labels
    train(get_stage("idm"), config, progress=False)
    last = read_log(tmp_path / "generated", "eval")[-1]
    assert np.isfinite(last["chunk_mse_generated"]) and np.isfinite(last["chunk_mse"])
    with pytest.raises(ValueError, match="generated_future_fraction needs generated_future_model"):
        IDMTrainConfig(generated_future_fraction=0.5)
    with pytest.raises(ValueError, match="generated_future_captions"):
        IDMTrainConfig(generated_future_captions="true")


def test_idm_generated_futures_from_the_vlms_captions_are_the_planners_own(assembled, dataset, tmp_path):
    from vans_engine.planner import Planner

    config = IDMTrainConfig(data=str(dataset), output_dir=str(tmp_path / "vlm"), **COMMON,
                            generated_future_model=str(assembled), generated_future_fraction=1.0,
                            generated_future_captions="vlm")
    stage = get_stage("idm")(config, torch.device("cpu"))
    batch = stage.valid_data.batch(np.arange(3))
    rendered = stage.render_futures(batch, np.ones(3, bool), seed=5)
    plans = Planner.from_pretrained(assembled).plan_batch(batch.context, batch.instructions, seed=5,
                                                          states=batch.state[:, 0])
    np.testing.assert_array_equal(rendered.future, np.stack([plan.frames for plan in plans]))
    np.testing.assert_array_equal(rendered.actions, batch.actions)


def test_planner_driven_dagger_executes_the_planners_plans(assembled, dataset, tmp_path):
    from vans_engine.planner import Planner
    from vans_sim.env import RoboDeskEnv, proprioception

    from vans_training.dagger import record_dagger
    from vans_training.data import NextEventData

    stats = record_dagger(assembled, dataset, tmp_path / "dagger", seed_start=1008, episodes_per_task=1,
                          idm_fraction=1.0, tasks=["push_red"], max_episode_steps=12, progress=False,
                          driver="planner")
    assert stats == {"branches": 3, "steps": 36, "successes": 0, "episodes": 1}
    extended = NextEventData(tmp_path / "dagger", "train", context_frames=1, anchor_every=2,
                             successful_only=False, include_perturbed=True)
    # the second branch starts where the planner's first plan (from the reset frame, repeated) took the arm
    planner, env = Planner.from_pretrained(assembled), RoboDeskEnv("push_red", image_size=64, split="train")
    obs, _ = env.reset(seed=1010)
    plan = planner.plan(np.stack([obs["image"]] * planner.config.context_frames), env.instruction, seed=0,
                        state=proprioception(obs))
    for action in plan.actions[: planner.config.future_frames // 2]:
        obs, *_ = env.step(np.clip(action, -1.0, 1.0).astype(np.float32))
    env.close()
    second = extended.batch(np.array([len(extended) - 2 * 6]))  # 6 anchors (every 2 steps) a branch
    np.testing.assert_array_equal(second.context[0, -1], obs["image"])
    with pytest.raises(ValueError, match="driver must be one of"):
        record_dagger(assembled, dataset, tmp_path / "bad", seed_start=1008, episodes_per_task=1, driver="vlm")


def test_unrolled_sampler_is_the_deployed_sampler_with_gradients():
    from vans_engine.models.vdm import VideoDiffusionSampler, as_denoiser, make_scheduler, make_vdm

    from vans_training.stages.vdm import unrolled_sampling_terms

    torch.manual_seed(0)
    denoiser = as_denoiser(make_vdm(**TINY_VDM), "current_frame_residual")
    context = torch.rand(2, 4, 3, 64, 64) * 2 - 1
    tokens, noise = torch.randn(2, 5, 384), torch.randn(2, 3, 8, 64, 64)
    clean = torch.rand(2, 3, 8, 64, 64) * 2 - 1
    error, sample = unrolled_sampling_terms(denoiser, make_scheduler(), context, clean, noise, tokens, steps=3)
    deployed = VideoDiffusionSampler(denoiser, make_scheduler())(context, tokens, num_inference_steps=3,
                                                                  latents=noise).frames
    torch.testing.assert_close(sample.clamp(-1, 1).transpose(1, 2), deployed, rtol=0, atol=1e-5)
    error.backward()
    assert denoiser.transformer.proj_out.weight.grad.abs().sum() > 0


def test_vdm_augmentation_moves_context_and_future_alike():
    from types import SimpleNamespace

    from vans_training.stages.vdm import VDMStage

    config = VDMTrainConfig(random_shift=4, photometric_jitter=0.2)
    for cameras in (("desk",), ("desk", "side")):  # two views lie side by side, each shifted on its own
        context = torch.rand(3, 4, 3, 64, 64 * len(cameras)) * 2 - 1
        clean = context[:, -1:].transpose(1, 2).repeat(1, 1, 8, 1, 1)  # a future that holds the current frame
        stage = SimpleNamespace(config=config, train_data=SimpleNamespace(cameras=cameras))
        moved_context, moved_clean = VDMStage.augment(stage, context, clean, torch.Generator().manual_seed(0))
        assert moved_context.shape == context.shape and moved_clean.shape == clean.shape
        assert not torch.allclose(moved_context, context)
        for k in range(8):  # still the current frame held, whatever the draw did to it
            torch.testing.assert_close(moved_clean[:, :, k], moved_context[:, -1])
    with pytest.raises(ValueError, match="random_shift must be >= 0"):
        VDMTrainConfig(random_shift=-1)


def test_vdm_action_consistency_fine_tunes_a_planners_vdm(assembled, trained, dataset, tmp_path):
    """init_from starts from the planner's VDM; the frozen IDM's error on the predicted video joins the
    loss, its gradient reaches the VDM and not the IDM, and evaluations score the sampled videos."""
    from safetensors.torch import load_file

    from vans_training.stages.vdm import trained_prediction

    fields = dict(init_from=str(assembled), action_model=str(trained["idm"]), action_weight=1.0, lr=2e-3,
                  min_lr=2e-3, eval_steps=1, ema_decay=0.0, eval_freq=8, save_freq=8)
    config = VDMTrainConfig(data=str(dataset), output_dir=str(tmp_path / "action"), **{**COMMON, **fields},
                            max_steps=8)
    stage = get_stage("vdm")(config, torch.device("cpu"))
    start = load_file(assembled / "vdm" / "diffusion_pytorch_model.safetensors")
    for key, value in stage.model.transformer.state_dict().items():
        torch.testing.assert_close(value, start[key], rtol=0, atol=0, msg=key)
    stage.forward_model = stage.model
    loss, scalars = stage.compute_loss(np.random.default_rng(0))
    assert scalars["loss"] == pytest.approx(scalars["flow_loss"] + scalars["action_loss"], rel=1e-5)
    loss.backward()
    assert all(p.grad is None for p in stage.action_idm.parameters())
    assert stage.model.transformer.proj_out.weight.grad.abs().sum() > 0
    stage.config = dataclasses.replace(config, unrolled_steps=2)  # the same terms on the deployed sampler's path
    unrolled_loss, unrolled = stage.compute_loss(np.random.default_rng(0))
    assert unrolled["loss"] == pytest.approx(unrolled["flow_loss"] + unrolled["action_loss"], rel=1e-5)
    assert unrolled["flow_loss"] != scalars["flow_loss"]

    train(get_stage("vdm"), config, progress=False)
    rows = read_log(tmp_path / "action")
    actions = [row["action_loss"] for row in rows]
    assert np.all(np.isfinite(actions)) and np.mean(actions[-3:]) < np.mean(actions[:3]), actions
    last = read_log(tmp_path / "action", "eval")[-1]
    assert last["action_mse_recorded"] < last["action_mse_still"]  # the IDM reads the recorded motion
    assert np.isfinite(last["action_mse"])
    # what the VDM was trained to predict is found from a checkpoint step and a planner checkpoint alike
    for folder in (tmp_path / "action" / "checkpoints" / "last" / "pretrained_model", assembled / "vdm"):
        assert trained_prediction(folder) == "current_frame_residual"

    with pytest.raises(ValueError, match="was trained with 'current_frame_residual'"):
        get_stage("vdm")(VDMTrainConfig(data=str(dataset), init_from=str(assembled), prediction="velocity"),
                         torch.device("cpu"))
    with pytest.raises(ValueError, match="action_weight > 0 needs action_model"):
        VDMTrainConfig(action_weight=0.5)
    with pytest.raises(ValueError, match="set teacher, not init_from"):
        DistillConfig(init_from=str(assembled))


def test_assembled_planner_evaluates_with_every_metric(assembled, dataset, tmp_path):
    from vans_training.evaluate import ACTION_METRICS, METRICS, SIM_METRICS, evaluate

    model = assembled
    index = json.loads((model / "model_index.json").read_text())
    assert "alignment/config.json" in index["files"] and index["trained"] is True
    result = evaluate(model, dataset, tmp_path / "eval", split="all", samples=6, batch_size=3)
    written = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert all(isinstance(written[m], float) and np.isfinite(written[m]) for m in METRICS + SIM_METRICS + ACTION_METRICS)
    # the plans' actions ran in the simulator, beside the recorded expert's and zero actions
    references = written["references"]
    assert 0 <= written["plan_event_reached"] <= 1
    assert references["recorded actions"]["plan_sim_reward"] >= references["zero actions"]["plan_sim_reward"]
    assert references["recorded actions"]["plan_motion_cosine"] == pytest.approx(1.0)
    assert written["samples"] == result["samples"] == 6
    assert (tmp_path / "eval" / "samples.gif").stat().st_size > 0
    # each sample's scores, which average to the table's
    rows = [json.loads(line) for line in (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and len({r["index"] for r in rows}) == 6
    for key in ("rouge_l", "psnr", "ssim", "alignment", "plan_event_reached"):
        assert np.mean([r[key] for r in rows]) == pytest.approx(written[key], abs=1e-6), key
    assert np.mean([r["event_correct"] for r in rows]) == pytest.approx(written["event_accuracy"])
    # and per event in progress, weighted back to the overall figure
    events = written["per_event"]
    assert sum(e["samples"] for e in events.values()) == 6
    assert sum(e["samples"] * e["event_accuracy"] for e in events.values()) / 6 == pytest.approx(written["event_accuracy"])
    assert "| task / event in progress |" in (tmp_path / "eval" / "eval.md").read_text()


def test_motion_scores_tell_length_from_direction():
    from vans_training.evaluate import motion_scores

    recorded = np.zeros((2, 3, 4), np.float32)
    recorded[..., 0] = 1.0
    recorded[..., 3] = -1.0  # the gripper is not motion
    mask = np.array([[True, True, True], [True, True, False]])
    half = motion_scores(0.5 * recorded, recorded, mask)
    assert half == pytest.approx({"plan_motion_length": 0.5, "plan_motion_cosine": 1.0})
    sideways = recorded.copy()
    sideways[..., :3] = [0.0, 2.0, 0.0]
    assert motion_scores(sideways, recorded, mask) == pytest.approx({"plan_motion_length": 2.0, "plan_motion_cosine": 0.0})
    still = motion_scores(np.zeros_like(recorded), recorded, mask)
    assert still == {"plan_motion_length": 0.0, "plan_motion_cosine": 0.0}


def test_evaluation_with_recorded_captions_leaves_the_vlm_out(assembled, dataset, tmp_path):
    from vans_training.evaluate import evaluate

    result = evaluate(assembled, dataset, tmp_path / "eval", split="all", samples=6, batch_size=3,
                      recorded_captions=True)
    # the planner was handed the recorded captions, so they score perfectly against themselves
    assert result["recorded_captions"] is True and result["rouge_l"] == pytest.approx(1.0)
    assert all(e["predicted"] == e["recorded"] for e in result["examples"])
    assert "recorded captions" in (tmp_path / "eval" / "eval.md").read_text()


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="unknown VDMTrainConfig fields \\['max_step'\\]"):
        load_config(VDMTrainConfig, CONFIGS / "vdm.yaml", ["max_step=3"])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        load_config(IDMTrainConfig, None, ["batch_size=0"])
    assert load_config(VDMTrainConfig, CONFIGS / "vdm.yaml", ["vdm.num_layers=2"]).vdm["num_layers"] == 2
    assert load_config(IDMTrainConfig, None, ["lr=1e-3", "min_lr=1e-4"]).lr == 1e-3  # YAML reads 1e-3 as text
    with pytest.raises(ValueError, match="IDMTrainConfig.lr must be float, got 'fast'"):
        load_config(IDMTrainConfig, None, ["lr=fast"])
    with pytest.raises(ValueError, match="object_weight must be >= 0 and photometric_jitter in"):
        load_config(FeatureIDMTrainConfig, None, ["object_weight=-1.0"])
    with pytest.raises(ValueError, match=r"photometric_jitter in \[0, 1\), got 0.0 and 1.5"):
        load_config(FeatureIDMTrainConfig, None, ["photometric_jitter=1.5"])
    with pytest.raises(ValueError, match="set the object offsets task with object_weight, not under head"):
        load_config(FeatureIDMTrainConfig, None, ["head.num_objects=3"])


def test_every_shipped_config_loads():
    from vans_training.stages import STAGES

    files = {"vlm-sft": "vlm_sft.yaml", "vdm": "vdm.yaml", "distill": "distill.yaml", "idm": "idm.yaml",
             "alignment": "alignment.yaml", "grpo-vlm": "grpo_vlm.yaml", "grpo-vdm": "grpo_vdm.yaml",
             "grpo-joint": "grpo_joint.yaml", "feature-idm": "feature_idm.yaml"}
    assert set(files) == set(STAGES)
    for stage, name in files.items():
        load_config(get_stage(stage).config_class, CONFIGS / name)
    assert load_config(VDMTrainConfig, CONFIGS / "vdm_action.yaml").action_weight > 0
    assert load_config(VLMSFTConfig, CONFIGS / "vlm_sft_state.yaml").reads_state


def test_two_process_ddp_run_with_torchrun(dataset, tmp_path):
    """The multi-GPU path, on the CPU: torchrun starts two ranks, gloo synchronises them, rank 0 saves."""
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "vans_training.cli", "idm",
                    "--config", str(CONFIGS / "idm.yaml"), "--quiet", "--set", f"data={dataset}",
                    "--set", f"output_dir={out}", "--set", "max_steps=4", "--set", "save_freq=2",
                    "--set", "eval_freq=4", "--set", "batch_size=4",
                    "--set", "idm={channels: [16, 16, 16, 16], hidden_dim: 32}"],
                   check=True, capture_output=True, timeout=300)
    assert [row["step"] for row in read_log(out)][-1] == 4
    assert (out / "final" / "config.json").is_file()
    assert int((out / "checkpoints" / "last").resolve().name) == 4
