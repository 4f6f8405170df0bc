import numpy as np
import onnxruntime as ort
import pytest
import torch

from vans_engine.constants import ACTION_MASK, ACTIONS, FRAMES, STATE
from vans_engine.models.idm import IDMConfig, InverseDynamicsModel


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
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = None
    for _ in range(40):
        loss, info = model.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else info["loss"]
    assert info["loss"] < 0.3 * first


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
