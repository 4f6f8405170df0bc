import numpy as np
import onnxruntime as ort
import pytest
import torch

from vans_engine.constants import ACTION_MASK, ACTIONS, FRAMES, STATE
from vans_engine.models.idm import IDMConfig, InverseDynamicsModel


def fit(model, batch: dict, steps: int, lr: float) -> list[dict]:
    """Adam on ``model.compute_loss(batch)`` for ``steps`` steps; each step's logged scalars, in order."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    infos = []
    for _ in range(steps):
        loss, info = model.compute_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        infos.append(info)
    return infos


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return InverseDynamicsModel(channels=(16, 32, 32, 32), hidden_dim=64).eval()


def test_heads_shapes_and_range(model):
    frames = torch.rand(2, 9, 3, 64, 64) * 2 - 1
    chunk = model.predict_action_chunk(frames)
    assert chunk.shape == (2, 8, 4) and chunk.abs().max() <= 1
    pair = model.predict_action(frames[:, 0], frames[:, 1], state=torch.zeros(2, 4))
    assert pair.shape == (2, 4)


def test_learns_a_transition_rule():
    """Overfit a batch where the action is readable from the frames: the loss must fall."""
    torch.manual_seed(0)
    model = InverseDynamicsModel(channels=(16, 32, 32, 32), hidden_dim=64)
    frames = torch.rand(4, 5, 3, 64, 64) * 2 - 1
    actions = (frames[:, 1:].mean(dim=(2, 3, 4)) - frames[:, :-1].mean(dim=(2, 3, 4))).unsqueeze(-1).repeat(1, 1, 4)
    batch = {FRAMES: frames, ACTIONS: actions * 5, ACTION_MASK: torch.ones(4, 4, dtype=torch.bool),
             STATE: torch.zeros(4, 4, 4)}
    infos = fit(model, batch, steps=40, lr=1e-3)
    assert infos[-1]["loss"] < 0.3 * infos[0]["loss"]


@pytest.mark.parametrize("options", [{}, {"chunk_state": True, "chunk_modes": 2, "cameras": ("desk", "side")}],
                         ids=["regression", "state-mixture-two-views"])
def test_loss_is_each_heads_error_on_its_own_predictions(options):
    """The loss encodes each transition once for both heads: its terms must be what the heads predict
    when called alone, and its gradient that of the two heads' errors summed."""
    torch.manual_seed(0)
    model = InverseDynamicsModel(channels=(16, 32, 32, 32), hidden_dim=64, **options)
    if "chunk_state" in options:
        torch.nn.init.normal_(model.chunk_state_proj.weight, std=0.5)
    b, n, (h, w) = 3, 4, model.frame_shape
    frames = torch.rand(b, n + 1, 3, h, w) * 2 - 1
    actions, state = torch.rand(b, n, 4) * 2 - 1, torch.rand(b, n, 4)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[0, -1] = False
    loss, info = model.compute_loss({FRAMES: frames, ACTIONS: actions, ACTION_MASK: mask, STATE: state})
    pair = model.predict_action(frames[:, :-1].flatten(0, 1), frames[:, 1:].flatten(0, 1), state.flatten(0, 1))
    chunk = model.predict_action_chunk(frames, state[:, 0])
    assert info["pair_mse"] == pytest.approx(((pair.view(b, n, 4) - actions) ** 2)[mask].mean().item(), rel=1e-5)
    assert info["chunk_mse"] == pytest.approx(((chunk - actions) ** 2)[mask].mean().item(), rel=1e-5)

    grads = torch.autograd.grad(loss, list(model.encoder.parameters()))
    if "chunk_modes" in options:  # the mixture's likelihood term, recomputed from its own heads
        logits, means, log_std = model.chunk_mixture(frames, state[:, 0])
        z = (actions[:, :, None] - means) / log_std.exp()
        per_mode = ((-0.5 * z**2 - log_std - 0.5 * np.log(2 * np.pi)) * mask[:, :, None, None]).sum(dim=(1, 3))
        chunk_term = -torch.logsumexp(torch.log_softmax(logits, dim=1) + per_mode, dim=1).sum() / (mask.sum() * 4)
    else:
        chunk_term = ((chunk - actions) ** 2)[mask].mean()
    separate = chunk_term + ((pair.view(b, n, 4) - actions) ** 2)[mask].mean()
    assert loss.item() == pytest.approx(separate.item(), rel=1e-5)
    for got, want in zip(grads, torch.autograd.grad(separate, list(model.encoder.parameters()))):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_loss_needs_one_more_frame_than_actions(model):
    batch = {FRAMES: torch.zeros(2, 5, 3, 64, 64), ACTIONS: torch.zeros(2, 3, 4)}
    with pytest.raises(ValueError, match="3 actions need 4 frames, got 5"):
        model.compute_loss(batch)


def test_save_and_load_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path / "idm")
    loaded = InverseDynamicsModel.from_pretrained(tmp_path / "idm").eval()
    frames = torch.rand(1, 9, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(model(frames), loaded(frames), rtol=0, atol=0)


def test_onnx_runtime_matches_pytorch(model, tmp_path):
    """Parity of the exported chunk head; tolerance 1e-5 absolute on actions in [-1, 1]."""
    frames = torch.rand(1, 9, 3, 64, 64) * 2 - 1
    program = torch.onnx.export(model, (frames,), dynamo=True, input_names=["frames"], output_names=["actions"],
                                dynamic_shapes={"frames": {0: "batch"}})
    program.save(str(tmp_path / "idm.onnx"))
    session = ort.InferenceSession(str(tmp_path / "idm.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.rand(batch, 9, 3, 64, 64) * 2 - 1
        expected = model(x).detach().numpy()
        got = session.run(None, {"frames": x.numpy()})[0]
        np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 9, 3, 32, 32), (1, 9, 64, 64, 3), (1, 1, 3, 64, 64)])
def test_bad_frames(model, shape):
    with pytest.raises(ValueError, match="frames"):
        model.predict_action_chunk(torch.zeros(shape))


def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        IDMConfig(image_size=60)
    with pytest.raises(ValueError, match="chunk_kernel"):
        IDMConfig(chunk_kernel=2)


def test_chunk_state_starts_as_the_model_without_it(model):
    """A chunk head given proprioception starts (zero-initialised) exactly as the one without it, and
    then needs the state; a model without it ignores a state it is given."""
    with_state = InverseDynamicsModel(channels=(16, 32, 32, 32), hidden_dim=64, chunk_state=True,
                                      state_mean=(0.0, 0.0, 0.5, 0.5), state_std=(0.2, 0.2, 0.1, 0.5)).eval()
    missing, unexpected = with_state.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and sorted(missing) == ["chunk_state_proj.bias", "chunk_state_proj.weight"]
    frames, state = torch.rand(2, 9, 3, 64, 64) * 2 - 1, torch.rand(2, 4)
    torch.testing.assert_close(with_state(frames, state), model(frames), rtol=0, atol=0)
    torch.testing.assert_close(model(frames, state), model(frames), rtol=0, atol=0)
    with pytest.raises(ValueError, match="proprioception"):
        with_state(frames)
    with pytest.raises(ValueError, match="state must have shape"):
        with_state(frames, torch.rand(2, 3))
    with pytest.raises(ValueError, match="3 states"):
        with_state(frames, torch.rand(3, 4))


def test_chunk_state_reaches_the_actions_and_onnx(tmp_path):
    torch.manual_seed(0)
    model = InverseDynamicsModel(channels=(16, 32, 32, 32), hidden_dim=64, chunk_state=True,
                                 state_mean=(0.0, 0.0, 0.5, 0.5), state_std=(0.2, 0.2, 0.1, 0.5)).eval()
    torch.nn.init.normal_(model.chunk_state_proj.weight, std=0.5)
    frames = torch.rand(3, 9, 3, 64, 64) * 2 - 1
    a, b = torch.rand(3, 4), torch.rand(3, 4)
    assert (model(frames, a) - model(frames, b)).abs().max() > 1e-3
    model.save_pretrained(tmp_path / "idm")
    loaded = InverseDynamicsModel.from_pretrained(tmp_path / "idm").eval()
    assert loaded.config.state_mean == [0.0, 0.0, 0.5, 0.5]  # the statistics travel in config.json
    torch.testing.assert_close(loaded(frames, a), model(frames, a), rtol=0, atol=0)

    from vans_engine.export import export_idm_onnx

    path = export_idm_onnx(model, tmp_path / "idm.onnx", future_frames=8)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["frames", "state"]
    for n in (1, 3):
        got = session.run(None, {"frames": frames[:n].numpy(), "state": a[:n].numpy()})[0]
        np.testing.assert_allclose(got, model(frames[:n], a[:n]).detach().numpy(), atol=1e-5)


def test_state_statistics_validation():
    with pytest.raises(ValueError, match="state_mean must have"):
        IDMConfig(state_mean=(0.0,), state_std=(1.0,))
    with pytest.raises(ValueError, match="go together"):
        IDMConfig(state_mean=(0.0,) * 4)
    with pytest.raises(ValueError, match="positive"):
        IDMConfig(state_mean=(0.0,) * 4, state_std=(1.0, 0.0, 1.0, 1.0))


def test_pooled_encoder_reads_a_motion_alike_wherever_it_happens():
    """A blob moving on a blank desk, 16 pixels (the encoder's total stride) further right: the
    pooled encoder's actions barely change (only the zero padding at the image border differs), the
    flattening encoder's, with weights of its own for every position, change several times more."""
    def clip(x0):
        frames = torch.zeros(1, 3, 3, 64, 64)
        for t in range(3):
            frames[0, t, :, 20:26, x0 + 2 * t:x0 + 2 * t + 6] = 1.0
        return frames

    torch.manual_seed(0)
    pooled = InverseDynamicsModel(channels=(16, 32, 32, 32), hidden_dim=64, pooling="mean_max").eval()
    flat = InverseDynamicsModel(channels=(16, 32, 32, 32), hidden_dim=64).eval()
    with torch.no_grad():
        moved_pooled = (pooled(clip(16)) - pooled(clip(32))).abs().max()
        moved_flat = (flat(clip(16)) - flat(clip(32))).abs().max()
    assert moved_pooled < 0.5 * moved_flat
    with pytest.raises(ValueError, match="pooling"):
        IDMConfig(pooling="sum")


def mixture_idm(**options) -> InverseDynamicsModel:
    torch.manual_seed(0)
    return InverseDynamicsModel(channels=(16, 32, 32, 32), hidden_dim=64, chunk_modes=3, **options)


def test_mixture_head_runs_its_most_probable_mode(tmp_path):
    """The planner's actions are the means of the likeliest mode, in torch and in ONNX Runtime."""
    model = mixture_idm().eval()
    torch.nn.init.normal_(model.chunk_mode_logits.weight, std=1.0)
    frames = torch.rand(5, 9, 3, 64, 64) * 2 - 1
    logits, means, log_std = model.chunk_mixture(frames)
    assert logits.shape == (5, 3) and means.shape == (5, 8, 3, 4) and log_std.shape == (5, 8, 3, 4)
    chunk = model.predict_action_chunk(frames)
    for i, mode in enumerate(logits.argmax(dim=1).tolist()):
        torch.testing.assert_close(chunk[i], means[i, :, mode], rtol=0, atol=0)

    from vans_engine.export import export_idm_onnx

    session = ort.InferenceSession(str(export_idm_onnx(model, tmp_path / "idm.onnx", future_frames=8)),
                                   providers=["CPUExecutionProvider"])
    for n in (1, 5):
        got = session.run(None, {"frames": frames[:n].numpy()})[0]
        np.testing.assert_allclose(got, chunk[:n].detach().numpy(), atol=1e-5)
    model.save_pretrained(tmp_path / "idm")
    loaded = InverseDynamicsModel.from_pretrained(tmp_path / "idm").eval()
    torch.testing.assert_close(loaded(frames), chunk, rtol=0, atol=0)


def test_mixture_head_keeps_two_motions_apart():
    """Frames that allow two opposite motions: regression learns their mean (no motion), the mixture
    learns both and runs a whole one."""
    frames = torch.rand(1, 5, 3, 64, 64).repeat(8, 1, 1, 1, 1) * 2 - 1
    sign = torch.tensor([1.0, -1.0]).repeat(4)[:, None, None]
    actions = (0.8 * sign * torch.tensor([1.0, 0.0, 0.0, 0.0])).expand(8, 4, 4).contiguous()
    batch = {FRAMES: frames, ACTIONS: actions, ACTION_MASK: torch.ones(8, 4, dtype=torch.bool)}
    lengths = {}
    for modes in (1, 2):
        torch.manual_seed(0)
        model = InverseDynamicsModel(channels=(16, 32, 32, 32), hidden_dim=64, chunk_modes=modes)
        if modes == 2:  # two modes a little apart, as a regression head split for fine-tuning starts
            with torch.no_grad():
                model.chunk_head[1].bias.add_(0.05 * torch.randn(8))
        info = fit(model, batch, steps=150, lr=1e-3)[-1]
        assert np.isfinite(info["loss"]) and info["chunk_mse"] >= 0
        lengths[modes] = float(model.eval().predict_action_chunk(frames[:1])[0, :, 0].detach().abs().mean())
    assert lengths[1] < 0.15, lengths
    assert lengths[2] > 0.6, lengths


def test_chunk_modes_validation():
    with pytest.raises(ValueError, match="chunk_modes"):
        IDMConfig(chunk_modes=0)


def test_two_views_are_read_each_on_its_own(tmp_path):
    """An IDM of two cameras reads (B, N, 3, 64, 128) frames, the views side by side: each view is
    encoded with the same convolutions as a picture of its own, so the encoder's feature is the same
    as that of the two views stacked as a batch of square pictures, joined. It exports to ONNX with the
    wide input, refuses square frames, and keeps its cameras through save and load."""
    torch.manual_seed(0)
    model = InverseDynamicsModel(channels=(16, 32, 32, 32), hidden_dim=64, pooling="mean_max",
                                 cameras=("desk", "side")).eval()
    assert model.frame_shape == (64, 128)
    frames = torch.rand(3, 9, 3, 64, 128) * 2 - 1
    before, after = frames[:, 0], frames[:, 1]
    with torch.no_grad():
        got = model.encoder(before, after)
        per_view = [model.encoder.convs(torch.cat([before[..., v * 64:(v + 1) * 64], after[..., v * 64:(v + 1) * 64]], 1))
                    for v in range(2)]
        pooled = torch.cat([torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1) for x in per_view], dim=1)
        expected = torch.nn.functional.silu(model.encoder.project(pooled))
    torch.testing.assert_close(got, expected)
    # the side view matters: changing it alone changes the actions
    changed = frames.clone()
    changed[..., 64:] = torch.rand(3, 9, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert (model(frames) - model(changed)).abs().max() > 1e-4
    with pytest.raises(ValueError, match=r"\(B, N, 3, 64, 128\) \(desk, side side by side\)"):
        model(torch.rand(1, 9, 3, 64, 64))

    from vans_engine.export import export_idm_onnx

    session = ort.InferenceSession(str(export_idm_onnx(model, tmp_path / "idm.onnx", future_frames=8)),
                                   providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"frames": frames.numpy()})[0], model(frames).detach().numpy(), atol=1e-5)
    model.save_pretrained(tmp_path / "idm")
    loaded = InverseDynamicsModel.from_pretrained(tmp_path / "idm").eval()
    assert tuple(loaded.config.cameras) == ("desk", "side")
    torch.testing.assert_close(loaded(frames), model(frames), rtol=0, atol=0)
    with pytest.raises(ValueError, match="distinct"):
        IDMConfig(cameras=("desk", "desk"))


def feature_idm(**options):
    from vans_engine.models.idm import VideoFeatureIDM

    settings = {"feature_dim": 32, "num_frames": 4, "patch_grid": (4, 4), "cell_dim": 8, "hidden_dim": 32,
                "state_mean": [0.0, 0.0, 0.5, 0.5], "state_std": [0.2, 0.2, 0.1, 0.4]}
    return VideoFeatureIDM(**{**settings, **options}).eval()


@pytest.mark.parametrize("readout", ["cells", "keypoints", "cells_and_keypoints"])
def test_video_feature_idm_pools_patches_and_saves(tmp_path, readout):
    from vans_engine.models.idm import load_idm

    model = feature_idm(readout=readout)
    tokens = torch.randn(3, 4 * 16, 32)
    pooled = model.pool_features(tokens)
    assert pooled.shape == (3, 4, 2, 2, 32)
    # cell (0, 1) of frame 2 is the mean of patches rows 0-1, columns 2-3 of that frame
    grid = tokens.view(3, 4, 4, 4, 32)
    torch.testing.assert_close(pooled[:, 2, 0, 1], grid[:, 2, 0:2, 2:4].mean(dim=(1, 2)))
    state = torch.tensor([[0.1, -0.1, 0.5, 1.0]] * 3)
    actions = model(tokens, state)
    assert actions.shape == (3, 4, 4) and actions.abs().max() <= 1
    model.save_pretrained(tmp_path / "idm")
    loaded = load_idm(tmp_path / "idm")
    assert type(loaded).__name__ == "VideoFeatureIDM" and loaded.reads_vdm_features and loaded.reads_state
    assert loaded.config.readout == readout
    torch.testing.assert_close(loaded(tokens, state), actions)
    assert not load_idm(_saved_pixel_idm(tmp_path / "pixels")).reads_vdm_features


def _saved_pixel_idm(folder):
    InverseDynamicsModel(channels=(16, 32, 32, 32), hidden_dim=64).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("tokens, state, message", [
    (torch.zeros(2, 60, 32), torch.zeros(2, 4), r"VDM features must have shape \(B, 64, 32\)"),
    (torch.zeros(2, 64, 16), torch.zeros(2, 4), r"VDM features must have shape"),
    (torch.zeros(2, 64, 32), torch.zeros(2, 3), r"state must have shape \(2, 4\)"),
])
def test_video_feature_idm_names_bad_inputs(tokens, state, message):
    with pytest.raises(ValueError, match=message):
        feature_idm()(tokens, state)


@pytest.mark.parametrize("options, message", [
    ({"pool": 3}, "must be divisible by pool 3"),
    ({"feature_step": -1}, "feature_step must be >= 0"),
    ({"state_std": [0.1, 0.1, 0.0, 0.1]}, "state_std must be positive"),
    ({"num_members": 0}, "num_members must be >= 1"),
    ({"readout": "flatten"}, "readout must be one of cells, keypoints, cells_and_keypoints"),
    ({"readout": "keypoints", "num_keypoints": 0}, "num_keypoints must be >= 1"),
    ({"num_objects": -1}, "num_objects, object_weight and frame_keypoints must be >= 0"),
    ({"frame_keypoints": -2}, "num_objects, object_weight and frame_keypoints must be >= 0"),
    ({"frame_keypoints": 2, "object_keypoints": 3}, r"object_keypoints must be between 0 and frame_keypoints \(2\)"),
    ({"frame_keypoints": 2, "object_keypoints": 1, "cameras": ("desk", "side")}, "taught on one camera's frame"),
])
def test_video_feature_idm_config_errors(options, message):
    with pytest.raises(ValueError, match=message):
        feature_idm(**options)


@pytest.mark.parametrize("readout", ["cells", "keypoints", "cells_and_keypoints"])
def test_video_feature_idm_learns_actions_from_tokens(readout):
    """The loss falls on a batch whose actions are a function of the tokens (masked steps ignored)."""
    from vans_engine.constants import ACTION_MASK, ACTIONS, STATE
    from vans_engine.models.idm import VDM_FEATURES

    torch.manual_seed(0)
    model = feature_idm(readout=readout).train()
    pooled = torch.randn(16, 4, 2, 2, 32)
    actions = torch.tanh(pooled[..., :4].mean(dim=(2, 3)))
    mask = torch.ones(16, 4, dtype=torch.bool)
    mask[:, -1] = False
    batch = {VDM_FEATURES: pooled, ACTIONS: actions, ACTION_MASK: mask, STATE: torch.zeros(16, 4)}
    losses = [info["loss"] for info in fit(model, batch, steps=40, lr=3e-3)]
    assert losses[-1] < 0.3 * losses[0]
    changed = dict(batch, **{ACTIONS: torch.where(mask[..., None], actions, 5.0)})
    assert model.compute_loss(changed)[0].item() == pytest.approx(model.compute_loss(batch)[0].item())


def test_video_feature_idm_learns_object_offsets_beside_the_actions_and_exports_the_actions_alone(tmp_path):
    """With ``num_objects`` the loss adds the objects' offsets from the tool point, weighted, at the
    unmasked steps; training lowers that error; the saved head and its ONNX graph give the actions only."""
    from vans_engine.constants import ACTION_MASK, ACTIONS, OBJECT_OFFSETS, STATE
    from vans_engine.export import export_idm_onnx
    from vans_engine.models.idm import VDM_FEATURES, load_idm

    torch.manual_seed(0)
    model = feature_idm(num_objects=2, object_weight=0.5).train()
    pooled = torch.randn(16, 4, 2, 2, 32)
    offsets = 0.1 * torch.tanh(pooled[..., :6].mean(dim=(2, 3))).reshape(16, 4, 2, 3)  # metres
    mask = torch.ones(16, 4, dtype=torch.bool)
    mask[:, -1] = False
    batch = {VDM_FEATURES: pooled, ACTIONS: torch.zeros(16, 4, 4), ACTION_MASK: mask, STATE: torch.zeros(16, 4),
             OBJECT_OFFSETS: offsets}
    loss, info = model.compute_loss(batch)
    assert loss.item() == pytest.approx(info["chunk_mse"] + 0.5 * info["object_mse"], rel=1e-5)
    told = model.member_object_offsets(pooled, batch[STATE])
    assert told.shape == (1, 16, 4, 2, 3)
    expected = ((told[0] - offsets)[mask] / 0.1) ** 2
    assert info["object_mse"] == pytest.approx(expected.mean().item(), rel=1e-4)
    masked_changed = dict(batch, **{OBJECT_OFFSETS: torch.where(mask[..., None, None], offsets, 9.0)})
    assert model.compute_loss(masked_changed)[1]["object_mse"] == pytest.approx(info["object_mse"])
    last = fit(model, batch, steps=80, lr=3e-3)[-1]
    assert last["object_mse"] < 0.3 * info["object_mse"]
    with pytest.raises(ValueError, match="a head with num_objects = 2 trains on object_offsets"):
        model.compute_loss({k: v for k, v in batch.items() if k != OBJECT_OFFSETS})
    with pytest.raises(ValueError, match="built without the object offsets task"):
        feature_idm().member_object_offsets(pooled, batch[STATE])

    model.eval().save_pretrained(tmp_path / "idm")
    loaded = load_idm(tmp_path / "idm")
    tokens, state = torch.randn(2, 4 * 16, 32), torch.tensor([[0.1, -0.1, 0.5, 1.0]] * 2)
    torch.testing.assert_close(loaded(tokens, state), model(tokens, state))
    session = ort.InferenceSession(str(export_idm_onnx(loaded, tmp_path / "idm.onnx", future_frames=4)),
                                   providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"vdm_features": tokens.numpy(), "state": state.numpy()})
    assert len(outputs) == 1
    np.testing.assert_allclose(outputs[0], model(tokens, state).detach().numpy(), atol=1e-5)


def test_video_feature_idm_reads_the_current_frame_and_exports_it_as_a_third_input(tmp_path):
    """With ``frame_keypoints`` the head's actions depend on the current frame, which it checks (one
    view's shape, or two side by side); it saves, loads and exports with ``frame`` as the graph's third
    input, and ONNX Runtime gives PyTorch's actions."""
    from vans_engine.export import export_idm_onnx
    from vans_engine.models.idm import CURRENT_FRAME, load_idm

    torch.manual_seed(0)
    model = feature_idm(frame_keypoints=3)
    assert model.reads_current_frame and not feature_idm().reads_current_frame
    tokens, state = torch.randn(2, 4 * 16, 32), torch.tensor([[0.1, -0.1, 0.5, 1.0]] * 2)
    frame = torch.rand(2, 3, 64, 64) * 2 - 1
    actions = model(tokens, state, frame)
    assert not torch.allclose(actions, model(tokens, state, torch.flip(frame, dims=[3])))
    for bad in (None, frame[:1], frame[:, :, :32]):
        with pytest.raises(ValueError, match=r"reads the current frame \(1 view\(s\) side by side\): frame must have "
                                             r"shape \(2, 3, 64, 64\)"):
            model(tokens, state, bad)
    two_views = feature_idm(frame_keypoints=3, cameras=("desk", "side"))
    assert two_views(tokens, state, torch.zeros(2, 3, 64, 128)).shape == (2, 4, 4)

    model.save_pretrained(tmp_path / "idm")
    loaded = load_idm(tmp_path / "idm")
    assert loaded.config.frame_keypoints == 3
    torch.testing.assert_close(loaded(tokens, state, frame), actions)
    assert list(loaded.example_inputs(1, 4)) == ["vdm_features", "state", CURRENT_FRAME]
    session = ort.InferenceSession(str(export_idm_onnx(loaded, tmp_path / "idm.onnx", future_frames=4)),
                                   providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["vdm_features", "state", CURRENT_FRAME]
    outputs = session.run(None, {"vdm_features": tokens.numpy(), "state": state.numpy(), CURRENT_FRAME: frame.numpy()})
    np.testing.assert_allclose(outputs[0], actions.detach().numpy(), atol=1e-5)


def squares_batch(count: int = 32):
    """Frames of one bright 4-pixel square each, anywhere, with actions pointing at it: a batch whose
    VDM tokens say nothing, so only the current frame tells the actions. Returns the batch and the
    squares' centres, x and y with the image's edges at -1 and 1."""
    from vans_engine.constants import ACTIONS, STATE
    from vans_engine.models.idm import CURRENT_FRAME, VDM_FEATURES

    where = torch.randint(4, 56, (count, 2))
    frame = -torch.ones(count, 3, 64, 64)
    for i, (x, y) in enumerate(where.tolist()):
        frame[i, :, y:y + 4, x:x + 4] = 1.0
    centres = (where.float() + 2) / 32 - 1
    actions = torch.cat([centres, torch.zeros(count, 2)], dim=1)[:, None].expand(-1, 4, -1) * 0.8
    return {VDM_FEATURES: torch.zeros(count, 4, 2, 2, 32), ACTIONS: actions, STATE: torch.zeros(count, 4),
            CURRENT_FRAME: frame}, centres


def test_video_feature_idm_finds_an_object_in_the_current_frame():
    """Actions that point at a bright square, placed anywhere in the frame, are learnt from the frame's
    keypoints when the VDM's tokens say nothing of it; the place comes through the spatial softmax."""
    torch.manual_seed(0)
    model = feature_idm(frame_keypoints=4).train()
    batch, _ = squares_batch()
    losses = [info["loss"] for info in fit(model, batch, steps=60, lr=3e-3)]
    assert losses[-1] < 0.2 * losses[0]


def test_video_feature_idm_object_keypoints_learn_to_sit_on_the_object():
    """With ``object_keypoints`` the loss adds the first keypoints' squared distance to where the
    objects are: trained, the keypoint sits on the square within a pixel; without the target the
    head says what it needs."""
    from vans_engine.constants import OBJECT_IMAGE_XY, STATE
    from vans_engine.models.idm import CURRENT_FRAME, VDM_FEATURES

    torch.manual_seed(0)
    model = feature_idm(frame_keypoints=2, object_keypoints=1).train()
    batch, centres = squares_batch()
    batch[OBJECT_IMAGE_XY] = centres[:, None]
    loss, info = model.compute_loss(batch)
    assert loss.item() == pytest.approx(info["chunk_mse"] + info["object_keypoint_mse"], rel=1e-5)
    fit(model, batch, steps=80, lr=3e-3)
    _, keypoints = model.member_features(batch[VDM_FEATURES], batch[STATE], batch[CURRENT_FRAME])[0]
    assert ((keypoints[:, 0] - centres).norm(dim=-1) * 32).max() < 1.0  # pixels
    with pytest.raises(ValueError, match="a head with object_keypoints = 1 trains on object_image_xy"):
        model.compute_loss({k: v for k, v in batch.items() if k != OBJECT_IMAGE_XY})
    with pytest.raises(ValueError, match=r"object_image_xy must have shape \(32, 1, 2\)"):
        model.compute_loss({**batch, OBJECT_IMAGE_XY: centres})


def test_video_feature_idm_keypoints_report_where_they_look():
    """The keypoints readout hands a frame's place over as image coordinates: a query whose attention
    is all on one cell reads that cell's x, y in [-1, 1], and the same object one cell over moves it by
    one cell's width."""
    torch.manual_seed(0)
    head = feature_idm(readout="keypoints", num_keypoints=1).members[0]
    pooled = torch.zeros(1, 4, 2, 2, 32)
    pooled[0, :, 0, 1] = 3 * torch.randn(32)  # an object in the top-right cell of every frame
    cells = head.projected_cells(pooled)
    with torch.no_grad():  # the query looks for what that cell holds, sharply
        head.keypoint_logits.weight.copy_(50 * (cells[0, 0, 1] - cells[0, 0, 0])[None])
        head.keypoint_logits.bias.zero_()
    where, what = head.keypoints(cells)
    torch.testing.assert_close(where[0, :, 0], torch.tensor([[1.0, -1.0]] * 4), atol=1e-3, rtol=0)
    torch.testing.assert_close(what[0, :, 0], cells[0, :, 1], atol=1e-3, rtol=0)
    moved = torch.roll(pooled, shifts=1, dims=3)  # the object one cell to the left: top-left
    where, _ = head.keypoints(head.projected_cells(moved))
    torch.testing.assert_close(where[0, :, 0], torch.tensor([[-1.0, -1.0]] * 4), atol=1e-3, rtol=0)


def test_video_feature_idm_ensemble_averages_its_members_and_saves(tmp_path):
    """An ensemble's actions are its members' mean; the members start apart; it saves and loads whole."""
    from vans_engine.models.idm import load_idm

    torch.manual_seed(0)
    model = feature_idm(num_members=3)
    tokens, state = torch.randn(2, 4 * 16, 32), torch.tensor([[0.1, -0.1, 0.5, 1.0]] * 2)
    pooled = model.pool_features(tokens)
    members = model.member_actions(pooled, state)
    assert members.shape == (3, 2, 4, 4)
    assert (members[0] - members[1]).abs().max() > 1e-3
    torch.testing.assert_close(model(tokens, state), members.mean(dim=0))
    model.save_pretrained(tmp_path / "idm")
    loaded = load_idm(tmp_path / "idm")
    assert loaded.config.num_members == 3
    torch.testing.assert_close(loaded(tokens, state), model(tokens, state))


def test_video_feature_idm_ensemble_members_learn_from_their_own_sample_weights():
    """A member whose bootstrap weights are all zero gets no gradient; bad weights are named."""
    from vans_engine.constants import ACTIONS, STATE
    from vans_engine.models.idm import MEMBER_WEIGHTS, VDM_FEATURES

    model = feature_idm(num_members=2).train()
    batch = {VDM_FEATURES: torch.randn(6, 4, 2, 2, 32), ACTIONS: torch.rand(6, 4, 4) * 2 - 1,
             STATE: torch.zeros(6, 4), MEMBER_WEIGHTS: torch.stack([torch.ones(6), torch.zeros(6)])}
    loss, _ = model.compute_loss(batch)
    loss.backward()
    first, second = (member.frame.weight.grad for member in model.members)
    assert first.abs().sum() > 0 and second.abs().sum() == 0
    with pytest.raises(ValueError, match=r"member_weights must have shape \(2, 6\)"):
        model.compute_loss({**batch, MEMBER_WEIGHTS: torch.ones(3, 6)})


def test_video_feature_idm_medoid_vote_follows_the_majority_and_exports(tmp_path):
    """With two members alike and a third apart, the medoid plan is the pair's (the mean is not);
    the vote runs the same in ONNX Runtime at any batch size."""
    from vans_engine.export import export_idm_onnx

    torch.manual_seed(0)
    model = feature_idm(num_members=3, ensemble_vote="medoid")
    model.members[1].load_state_dict(model.members[0].state_dict())
    tokens, state = torch.randn(3, 4 * 16, 32), torch.tensor([[0.1, -0.1, 0.5, 1.0]] * 3)
    members = model.member_actions(model.pool_features(tokens), state)
    torch.testing.assert_close(model(tokens, state), members[0])
    assert (members.mean(dim=0) - members[0]).abs().max() > 1e-3
    session = ort.InferenceSession(str(export_idm_onnx(model, tmp_path / "idm.onnx", future_frames=4)),
                                   providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        feeds = {"vdm_features": tokens[:batch].numpy(), "state": state[:batch].numpy()}
        np.testing.assert_allclose(session.run(None, feeds)[0], model(tokens[:batch], state[:batch]).detach().numpy(),
                                   atol=1e-5)
    with pytest.raises(ValueError, match="ensemble_vote must be one of mean, medoid"):
        feature_idm(ensemble_vote="majority")
