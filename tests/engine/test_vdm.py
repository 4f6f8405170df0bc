import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the caption encoder must never reach the Hub

import numpy as np
import onnxruntime as ort
import pytest
import torch
from diffusers import WanTransformer3DModel

from vans_engine.models.vdm import (
    CaptionEncoder,
    VideoDiffusionSampler,
    export_vdm_onnx,
    flow_matching_inputs,
    load_vdm,
    make_scheduler,
    make_vdm,
    pack_model_input,
    sample_training_timesteps,
    vdm_config,
)
from vans_engine.models.vdm.export import example_inputs
from vans_engine.models.vdm.parameterization import as_denoiser, current_frame, zero_output_layer

# A narrow model keeps the suite fast; the default size is checked by counting, not running.
TINY = dict(num_layers=1, num_attention_heads=2, attention_head_dim=32, ffn_dim=128)


@pytest.fixture(scope="module")
def transformer():
    torch.manual_seed(0)
    return make_vdm(**TINY).eval()


@pytest.fixture(scope="module")
def caption_encoder():
    return CaptionEncoder()


def context(batch=2, num_context=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, num_context, 3, 64, 64), dtype=torch.uint8, generator=g)


def tokens(batch=2, seed=0):
    return torch.randn(batch, 32, 384, generator=torch.Generator().manual_seed(seed))


def test_default_config_size():
    model = WanTransformer3DModel(**vdm_config())
    n_params = sum(p.numel() for p in model.parameters())
    assert 4.5e6 < n_params < 10e6
    assert (model.config.in_channels, model.config.out_channels, model.config.text_dim) == (7, 3, 384)
    assert tuple(model.config.patch_size) == (1, 8, 8)


def test_pack_model_input_layout():
    noisy = torch.randn(2, 3, 8, 64, 64)
    ctx = torch.rand(2, 4, 3, 64, 64) * 2 - 1
    packed = pack_model_input(noisy, ctx)
    assert packed.shape == (2, 7, 8, 64, 64)
    assert torch.equal(packed[:, :3], noisy)
    assert torch.equal(packed[:, 3:6, :4], ctx.transpose(1, 2))
    assert packed[:, 3:6, 4:].abs().sum() == 0
    assert torch.equal(packed[:, 6, :, 0, 0], torch.tensor([[1.0] * 4 + [0.0] * 4] * 2))


def test_sampling_shapes(transformer):
    sampler = VideoDiffusionSampler(transformer, make_scheduler())
    out = sampler(context(), tokens(), num_inference_steps=2, num_videos_per_prompt=2,
                  generator=torch.Generator().manual_seed(0))
    assert out.frames.shape == (4, 8, 3, 64, 64) and out.frames.dtype == torch.float32
    assert out.frames.abs().max() <= 1
    (frames,) = sampler(context(batch=1, num_context=1), tokens(batch=1), num_inference_steps=2,
                        output_type="uint8", return_dict=False)
    assert frames.shape == (1, 8, 3, 64, 64) and frames.dtype == torch.uint8


def test_sampling_is_deterministic_with_a_seed(transformer):
    sampler = VideoDiffusionSampler(transformer, make_scheduler())

    def run(seed):
        return sampler(context(), tokens(), num_inference_steps=2, generator=torch.Generator().manual_seed(seed)).frames

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_save_and_load_round_trip(transformer, tmp_path):
    transformer.save_pretrained(tmp_path / "vdm")
    assert (tmp_path / "vdm" / "config.json").is_file()
    assert (tmp_path / "vdm" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = load_vdm(tmp_path / "vdm")
    inputs = example_inputs(transformer, batch_size=2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(transformer(**inputs).sample, loaded(**inputs).sample)


def test_from_pretrained_reads_the_same_files(transformer, tmp_path):
    pytest.importorskip("accelerate", reason="WanTransformer3DModel.from_pretrained needs accelerate")
    transformer.save_pretrained(tmp_path / "vdm")
    loaded = WanTransformer3DModel.from_pretrained(tmp_path / "vdm")
    for name, tensor in transformer.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_load_names_the_bad_file(transformer, tmp_path):
    transformer.save_pretrained(tmp_path / "vdm")
    (tmp_path / "vdm" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="diffusion_pytorch_model.safetensors"):
        load_vdm(tmp_path / "vdm")
    make_vdm(**{**TINY, "ffn_dim": 64}).save_pretrained(tmp_path / "other")
    (tmp_path / "other" / "config.json").write_text((tmp_path / "vdm" / "config.json").read_text())
    with pytest.raises(ValueError, match="diffusion_pytorch_model.safetensors"):
        load_vdm(tmp_path / "other")


def test_flow_matching_matches_scheduler():
    scheduler = make_scheduler(shift=3.0)
    clean, noise = torch.rand(2, 3, 8, 64, 64) * 2 - 1, torch.randn(2, 3, 8, 64, 64)
    timesteps = sample_training_timesteps(scheduler, 2, generator=torch.Generator().manual_seed(0))
    noisy, target = flow_matching_inputs(clean, noise, timesteps, scheduler.config.num_train_timesteps)
    torch.testing.assert_close(noisy, scheduler.scale_noise(clean, timesteps, noise))
    # With the exact velocity, one Euler step from pure noise lands on the clean frames.
    scheduler.set_timesteps(1)
    step = scheduler.step(target, scheduler.timesteps[0], noise, return_dict=False)[0]
    torch.testing.assert_close(step, clean, atol=1e-5, rtol=0)


def test_caption_encoder(caption_encoder):
    a, mask = caption_encoder(["the gripper presses the red button", "the drawer opens",
                               "the gripper presses the red button"])
    assert a.shape == (3, 32, 384) and mask.shape == (3, 32)
    assert torch.equal(a[0], a[2])
    assert not torch.allclose(a[0], a[1])
    assert a[1][mask[1] == 0].abs().sum() == 0  # padding is zeroed for mask-free cross-attention


def test_onnx_matches_pytorch(transformer, tmp_path):
    path = export_vdm_onnx(transformer, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["hidden_states", "timestep", "encoder_hidden_states"]
    for batch in (1, 3):  # the batch axis is dynamic
        inputs = example_inputs(transformer, batch_size=batch, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = transformer(**inputs, return_dict=False)[0].numpy()
        (got,) = session.run(["velocity"], {k: v.numpy() for k, v in inputs.items()})
        assert np.abs(got - expected).max() < 1e-4


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (torch.zeros(2, 4, 64, 64, 3, dtype=torch.uint8), "shape"),
        (torch.zeros(2, 4, 3, 32, 32, dtype=torch.uint8), "64x64"),
        (torch.zeros(2, 9, 3, 64, 64, dtype=torch.uint8), "1 to 8 frames"),
        (torch.full((2, 4, 3, 64, 64), float("nan")), "NaN"),
        (torch.full((2, 4, 3, 64, 64), 255.0), r"\[-1, 1\]"),
    ],
)
def test_bad_frames_raise(transformer, frames, message):
    sampler = VideoDiffusionSampler(transformer, make_scheduler())
    with pytest.raises(ValueError, match=message):
        sampler(frames, tokens(), num_inference_steps=1)


def test_bad_tokens_raise(transformer):
    sampler = VideoDiffusionSampler(transformer, make_scheduler())
    with pytest.raises(ValueError, match="caption tokens"):
        sampler(context(), torch.zeros(2, 32, 512), num_inference_steps=1)
    with pytest.raises(ValueError, match="batch mismatch"):
        sampler(context(), tokens(batch=1), num_inference_steps=1)


def test_export_friendly_attention_matches_diffusers():
    """Our attention processor computes exactly what diffusers' WanAttnProcessor does."""
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor

    from vans_engine.models.vdm import make_vdm

    torch.manual_seed(0)
    ours = make_vdm(num_layers=1).eval()
    stock = WanTransformer3DModel(**vdm_config(num_layers=1)).eval()
    stock.load_state_dict(ours.state_dict())
    stock.set_attn_processor(WanAttnProcessor())
    inputs = {"hidden_states": torch.randn(1, 7, 8, 64, 64), "timestep": torch.tensor([500.0]),
              "encoder_hidden_states": tokens(1)}
    with torch.no_grad():
        torch.testing.assert_close(ours(**inputs, return_dict=False)[0], stock(**inputs, return_dict=False)[0],
                                   rtol=1e-5, atol=1e-5)


# -- the current-frame-residual parameterization ------------------------------------------------------

@pytest.mark.parametrize("num_context", [1, 3, 4])
def test_current_frame_is_read_from_the_last_filled_slot(num_context):
    clip = context(batch=2, num_context=num_context)
    packed = pack_model_input(torch.randn(2, 3, 8, 64, 64), clip.float() / 127.5 - 1.0)
    expected = clip[:, -1].float() / 127.5 - 1.0
    torch.testing.assert_close(current_frame(packed)[:, :, 0], expected)


@pytest.mark.parametrize("steps", [1, 2, 16])
def test_untrained_residual_model_holds_the_current_frame(steps):
    """A zeroed output layer predicts no change: every Euler schedule lands on the current frame."""
    torch.manual_seed(0)
    denoiser = as_denoiser(zero_output_layer(make_vdm(**TINY)).eval(), "current_frame_residual")
    clip = context(batch=2)
    video = VideoDiffusionSampler(denoiser, make_scheduler())(clip, tokens(), num_inference_steps=steps,
                                                               generator=torch.Generator().manual_seed(0),
                                                               output_type="uint8").frames
    held = clip[:, -1:].expand(-1, 8, -1, -1, -1)
    assert (video.int() - held.int()).abs().max() <= 1


def test_residual_denoiser_onnx_matches_pytorch(transformer, tmp_path):
    denoiser = as_denoiser(transformer, "current_frame_residual")
    path = export_vdm_onnx(denoiser, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    clip = context(batch=3).float() / 127.5 - 1.0
    inputs = {"hidden_states": pack_model_input(torch.randn(3, 3, 8, 64, 64), clip),
              "timestep": torch.tensor([1000.0, 500.0, 20.0]), "encoder_hidden_states": tokens(3)}
    with torch.no_grad():
        expected = denoiser(**inputs)[0].numpy()
    (got,) = session.run(["velocity"], {k: v.numpy() for k, v in inputs.items()})
    assert np.abs(got - expected).max() < 1e-3 * max(1.0, np.abs(expected).max())


def test_unknown_prediction_is_refused():
    with pytest.raises(ValueError, match="vdm prediction must be one of"):
        as_denoiser(make_vdm(**TINY), "epsilon")
