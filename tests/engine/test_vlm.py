import numpy as np
import pytest
import torch

from vans_engine.models.vlm import NextEventVLM, train_caption_tokenizer, video_patches

CORPUS = ["push the red button", "open the drawer", "the gripper presses the red button",
          "the gripper pulls the drawer open", "the gripper moves above the red button"]
INSTRUCTION = "push the red button"


@pytest.fixture(scope="module")
def tokenizer():
    return train_caption_tokenizer(CORPUS)


@pytest.fixture(scope="module")
def vlm(tokenizer):
    torch.manual_seed(0)
    return NextEventVLM.from_config(tokenizer, hidden_size=64, num_hidden_layers=2, intermediate_size=128,
                                    vision_hidden_size=32, vision_depth=1)


def clip(seed=0, t=4):
    return np.random.default_rng(seed).integers(0, 256, (t, 64, 64, 3), dtype=np.uint8)


def test_tokenizer_round_trip(tokenizer):
    for text in CORPUS + ["an instruction with words it never saw: déjà vu 42"]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    assert len(tokenizer("the gripper presses the red button", add_special_tokens=False)["input_ids"]) <= 8


def test_patch_layout_matches_qwen_processor():
    """A two-frame clip of one repeated image is what Qwen's image processor patchifies for that image."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    image = clip(1, 1)[0]
    processor = Qwen2VLImageProcessorPil(patch_size=8, temporal_patch_size=2, merge_size=2,
                                         min_pixels=64 * 64, max_pixels=64 * 64)
    expected = processor(images=[image], return_tensors="np")
    ours, grid = video_patches(np.stack([image, image]), patch_size=8, temporal_patch_size=2, merge_size=2)
    np.testing.assert_array_equal(grid, expected["image_grid_thw"])
    np.testing.assert_allclose(ours, expected["pixel_values"], atol=1e-5)


def test_patch_layout_of_a_moving_clip():
    """Each row holds one patch: channels, then the frames of its temporal group, then rows and columns,
    and each 2x2 block of patches is contiguous, as in Qwen2VLVideoProcessor.patchify."""
    frames = clip(2, 4)
    patches, grid = video_patches(frames, patch_size=8, temporal_patch_size=2, merge_size=2)
    assert grid.tolist() == [[2, 8, 8]] and patches.shape == (128, 3 * 2 * 8 * 8)
    pixels = (frames.astype(np.float32) / 255 - [0.48145466, 0.4578275, 0.40821073]) / [0.26862954, 0.26130258, 0.27577711]
    # token 1 of temporal group 1 is block (0, 0), in-block position (0, 1): patch row 0, column 1
    row = patches[64 + 1].reshape(3, 2, 8, 8)
    np.testing.assert_allclose(row[:, 0], pixels[2, 0:8, 8:16].transpose(2, 0, 1), atol=1e-5)
    np.testing.assert_allclose(row[:, 1], pixels[3, 0:8, 8:16].transpose(2, 0, 1), atol=1e-5)
    # token 4 starts the second 2x2 block: patch row 0, column 2
    np.testing.assert_allclose(patches[4].reshape(3, 2, 8, 8)[:, 0], pixels[0, 0:8, 16:24].transpose(2, 0, 1), atol=1e-5)
    # an odd clip is padded with its last frame
    odd, odd_grid = video_patches(frames[:3], 8, 2, 2)
    assert odd_grid.tolist() == [[2, 8, 8]]
    np.testing.assert_allclose(odd.reshape(128, 3, 2, 64)[64:, :, 1], odd.reshape(128, 3, 2, 64)[64:, :, 0])


def test_generation_greedy_and_sampled(vlm):
    greedy = vlm.generate_captions(clip(), INSTRUCTION, max_new_tokens=6)
    assert len(greedy) == 1 and isinstance(greedy[0], str)
    a = vlm.generate_captions(clip(), INSTRUCTION, num_samples=4, do_sample=True, seed=3, max_new_tokens=6)
    b = vlm.generate_captions(clip(), INSTRUCTION, num_samples=4, do_sample=True, seed=3, max_new_tokens=6)
    assert len(a) == 4 and a == b


def test_sft_loss_falls_and_greedy_learns_the_caption(tokenizer):
    torch.manual_seed(0)
    vlm = NextEventVLM.from_config(tokenizer, hidden_size=64, num_hidden_layers=2, intermediate_size=128,
                                   vision_hidden_size=32, vision_depth=1)
    vlm.model.train()
    opt = torch.optim.AdamW(vlm.model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss, info = vlm.compute_loss([clip()], [INSTRUCTION], ["the gripper presses the red button"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(info["loss"])
    vlm.model.eval()
    assert np.isfinite(losses).all() and losses[-1] < 0.2 * losses[0]
    assert vlm.generate_captions(clip(), INSTRUCTION, max_new_tokens=10) == ["the gripper presses the red button"]


def test_save_and_load_round_trip(vlm, tmp_path):
    vlm.save_pretrained(tmp_path / "vlm")
    assert (tmp_path / "vlm" / "tokenizer.json").exists()
    loaded = NextEventVLM.from_pretrained(tmp_path / "vlm")
    assert loaded.generate_captions(clip(), INSTRUCTION, max_new_tokens=8) == \
        vlm.generate_captions(clip(), INSTRUCTION, max_new_tokens=8)


@pytest.mark.parametrize("frames, message", [
    (np.zeros((4, 64, 64), np.uint8), "frames must be"),
    (np.full((4, 64, 64, 3), np.nan, np.float32), "NaN"),
    (np.zeros((4, 64, 64, 3), np.int64), "uint8"),
    (np.zeros((4, 60, 60, 3), np.uint8), "multiple of"),
])
def test_bad_frames(vlm, frames, message):
    with pytest.raises(ValueError, match=message):
        vlm.generate_captions(frames, INSTRUCTION)


def test_bad_and_long_instructions(vlm):
    with pytest.raises(ValueError, match="non-empty"):
        vlm.generate_captions(clip(), "   ")
    with pytest.warns(UserWarning, match="truncated"):
        vlm.generate_captions(clip(), "push the red button " * 40, max_new_tokens=2)
