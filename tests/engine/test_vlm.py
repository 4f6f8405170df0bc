import importlib.util

import numpy as np
import pytest
import torch
from transformers import PreTrainedTokenizerFast
from vans_sim.tasks import TASKS

from vans_engine.models.vlm import SPECIAL_TOKENS, NextEventVLM, train_caption_tokenizer, video_patches
from vans_engine.models.vlm.modeling_vlm import state_text
from vans_engine.models.vlm.video_patches import CLIP_MEAN, CLIP_STD

PATCH, TEMPORAL, MERGE = 8, 2, 2
INSTRUCTION = TASKS[next(iter(TASKS))].instruction


def corpus() -> list[str]:
    return [task.instruction for task in TASKS.values()] + [
        caption for task in TASKS.values() for event in task.events for caption in event.captions]


@pytest.fixture(scope="module")
def tokenizer():
    return train_caption_tokenizer(corpus())


@pytest.fixture(scope="module")
def vlm(tokenizer):
    torch.manual_seed(0)
    return NextEventVLM.from_config(tokenizer)


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)


# -- tokenizer --------------------------------------------------------------------------------------

def test_tokenizer_round_trips_every_caption_and_keeps_special_tokens_whole(tokenizer, tmp_path):
    for text in corpus():
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    for token in SPECIAL_TOKENS:
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1, token
    # Text unseen in training still encodes (byte fallback) and the saved tokenizer.json reloads.
    tokenizer.save_pretrained(tmp_path)
    reloaded = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    text = "Zebra! put the 🍎 in the bin"
    assert reloaded.decode(reloaded(text)["input_ids"]) == text
    assert (tmp_path / "tokenizer.json").is_file()


# -- configuration ---------------------------------------------------------------------------------

def test_config_is_a_consistent_qwen2_5_vl_config(vlm, tokenizer):
    config = vlm.model.config
    assert config.model_type == "qwen2_5_vl"
    text, vision = config.text_config, config.vision_config
    head_dim = text.hidden_size // text.num_attention_heads
    # Multimodal RoPE: the (t, h, w) sections must fill the rotary half of each head.
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    assert text.vocab_size == len(tokenizer) and vision.out_hidden_size == text.hidden_size
    assert config.video_token_id == tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert config.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")


# -- video patches ----------------------------------------------------------------------------------

def rederived_patches(frames: np.ndarray) -> np.ndarray:
    """Qwen's layout rebuilt one patch at a time, from the order its video processor documents:
    rows run over (t, block row, block col, row in block, col in block), columns over (C, t, y, x)."""
    pixels = ((frames.astype(np.float64) / 255 - CLIP_MEAN) / CLIP_STD).transpose(0, 3, 1, 2)  # T, C, H, W
    grid_t, grid_h, grid_w = len(frames) // TEMPORAL, frames.shape[1] // PATCH, frames.shape[2] // PATCH
    rows = []
    for t in range(grid_t):
        for block_y in range(grid_h // MERGE):
            for block_x in range(grid_w // MERGE):
                for in_y in range(MERGE):
                    for in_x in range(MERGE):
                        y, x = (block_y * MERGE + in_y) * PATCH, (block_x * MERGE + in_x) * PATCH
                        cube = pixels[t * TEMPORAL:(t + 1) * TEMPORAL, :, y:y + PATCH, x:x + PATCH]  # T, C, p, p
                        rows.append(cube.transpose(1, 0, 2, 3).ravel())
    return np.stack(rows)


def test_patch_layout_matches_a_patch_by_patch_rederivation(frames):
    patches, grid = video_patches(frames, PATCH, TEMPORAL, MERGE)
    assert patches.shape == (2 * 8 * 8, 3 * TEMPORAL * PATCH * PATCH) and patches.dtype == np.float32
    assert grid.tolist() == [[2, 8, 8]]
    np.testing.assert_allclose(patches, rederived_patches(frames), atol=1e-5)


def test_odd_clip_is_padded_with_its_last_frame(frames):
    patches, grid = video_patches(frames[:3], PATCH, TEMPORAL, MERGE)
    assert grid.tolist() == [[2, 8, 8]]
    np.testing.assert_allclose(patches, rederived_patches(frames[[0, 1, 2, 2]]), atol=1e-5)


def test_patch_layout_matches_transformers_image_processor(frames):
    """Qwen's image processor patchifies a still image as a clip of ``temporal_patch_size`` copies of
    it, in the video layout: a clip of repeated frames must give the same rows, time group by time group."""
    try:  # the numpy/PIL backend; the default backend imports torchvision, which we cannot install
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    except ImportError as error:
        pytest.skip(f"Qwen2VLImageProcessorPil does not import here ({error}); the re-derivation test still runs")
    processor = Qwen2VLImageProcessorPil(patch_size=PATCH, temporal_patch_size=TEMPORAL, merge_size=MERGE)
    stills = frames[::2]  # one image per time group
    expected = processor(images=list(stills), do_resize=False, return_tensors="np")
    assert expected["image_grid_thw"].tolist() == [[1, 8, 8]] * len(stills)
    patches, grid = video_patches(np.repeat(stills, TEMPORAL, axis=0), PATCH, TEMPORAL, MERGE)
    assert grid.tolist() == [[len(stills), 8, 8]]
    np.testing.assert_allclose(patches, expected["pixel_values"], atol=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None,
                    reason="Qwen2VLVideoProcessor needs torchvision, which is not installed beside our torch")
def test_processor_path_matches_numpy_path(frames):
    ours = video_patches(frames, PATCH, TEMPORAL, MERGE)
    theirs = video_patches(frames, PATCH, TEMPORAL, MERGE, use_processor=True)
    np.testing.assert_allclose(ours[0], theirs[0], atol=1e-5)
    np.testing.assert_array_equal(ours[1], theirs[1])


# -- prompt, generation, loss ------------------------------------------------------------------------

def test_prompt_has_one_video_token_per_merged_block(vlm, frames):
    inputs = vlm.build_inputs([frames], [INSTRUCTION])
    grid = inputs["video_grid_thw"][0]
    assert (inputs["input_ids"] == vlm.video_token_id).sum() == grid.prod() // MERGE**2 == 32
    assert inputs["pixel_values_videos"].shape == (grid.prod(), 3 * TEMPORAL * PATCH * PATCH)
    assert inputs["attention_mask"].all()
    text = vlm.tokenizer.decode(inputs["input_ids"][0])
    assert text.startswith("<|im_start|>user\n<|vision_start|><|video_pad|>")
    assert text.endswith(f"<|vision_end|>{INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n")


def test_generation_returns_strings_and_seeded_samples_repeat(vlm, frames):
    greedy = vlm.generate_captions(frames, INSTRUCTION, max_new_tokens=8)
    assert len(greedy) == 1 and isinstance(greedy[0], str)
    assert vlm.generate_captions(frames, INSTRUCTION, max_new_tokens=8, min_new_tokens=8)[0]
    assert vlm.generate_captions(frames, INSTRUCTION, max_new_tokens=8) == greedy
    samples = vlm.generate_captions(frames, INSTRUCTION, num_samples=4, do_sample=True, max_new_tokens=8, seed=3)
    assert len(samples) == 4 and all(isinstance(s, str) for s in samples)
    again = vlm.generate_captions(frames, INSTRUCTION, num_samples=4, do_sample=True, max_new_tokens=8, seed=3)
    assert again == samples
    other = vlm.generate_captions(frames, INSTRUCTION, num_samples=4, do_sample=True, max_new_tokens=8, seed=4)
    assert other != samples


def test_static_cache_gives_the_same_greedy_tokens(vlm, frames):
    # min_new_tokens: an untrained model may close the caption at once, which would compare nothing.
    inputs = vlm.build_inputs([frames], [INSTRUCTION])
    kwargs = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=vlm.tokenizer.pad_token_id)
    with torch.no_grad():
        dynamic = vlm.model.generate(**inputs, **kwargs)
        static = vlm.model.generate(**inputs, **kwargs, cache_implementation="static")
    assert torch.equal(dynamic, static)


def test_loss_scores_the_caption_only_and_falls_when_overfitting(tokenizer, frames):
    torch.manual_seed(0)
    vlm = NextEventVLM.from_config(tokenizer)
    caption = TASKS[next(iter(TASKS))].events[0].captions[0]
    inputs = vlm.build_inputs([frames], [INSTRUCTION], [caption])
    scored = inputs["labels"][inputs["labels"] != -100]
    assert vlm.tokenizer.decode(scored) == caption + "<|im_end|>"

    vlm.model.train()
    optimizer = torch.optim.AdamW(vlm.model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss = vlm.loss(frames, INSTRUCTION, caption)
        assert torch.isfinite(loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    vlm.model.eval()
    assert losses[-1] < 0.2 * losses[0], losses


def test_save_and_load_give_the_same_greedy_caption(vlm, frames, tmp_path):
    vlm.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in tmp_path.iterdir()}
    loaded = NextEventVLM.from_pretrained(tmp_path)
    assert loaded.generate_captions(frames, INSTRUCTION, max_new_tokens=12) == \
        vlm.generate_captions(frames, INSTRUCTION, max_new_tokens=12)
    # An untrained model's greedy caption may be empty: sampled ones and logits compare more.
    sample = dict(num_samples=2, do_sample=True, max_new_tokens=12, seed=0)
    assert loaded.generate_captions(frames, INSTRUCTION, **sample) == vlm.generate_captions(frames, INSTRUCTION, **sample)
    inputs = vlm.build_inputs([frames], [INSTRUCTION])
    with torch.no_grad():
        assert torch.equal(loaded.model(**inputs).logits, vlm.model(**inputs).logits)


def test_state_text_rounds_to_the_centimetre_without_negative_zero():
    assert state_text(np.array([0.5249, -0.004, 0.18, 1.0], np.float32)) == "tool at x 0.52 y 0.00 z 0.18, gripper 1.00"
    assert state_text(np.array([0.7, -0.456, 0.0, 0.031])) == "tool at x 0.70 y -0.46 z 0.00, gripper 0.03"


def test_state_reading_vlm_states_the_proprioception_in_its_prompt(tokenizer, frames, tmp_path):
    """The state line sits between the instruction and the end of the user turn, survives saving, and
    a different state changes the caption's logits; a VLM without it ignores states."""
    torch.manual_seed(0)
    vlm = NextEventVLM.from_config(tokenizer, reads_state=True)
    state = np.array([[0.52, -0.1, 0.18, 0.95]], np.float32)
    inputs = vlm.build_inputs([frames], [INSTRUCTION], states=state)
    text = vlm.tokenizer.decode(inputs["input_ids"][0])
    assert text.endswith(f"<|vision_end|>{INSTRUCTION}\ntool at x 0.52 y -0.10 z 0.18, gripper 0.95<|im_end|>\n"
                         "<|im_start|>assistant\n")
    vlm.save_pretrained(tmp_path)
    loaded = NextEventVLM.from_pretrained(tmp_path)
    assert loaded.reads_state
    closed = state.copy()
    closed[0, 3] = 0.0
    with torch.no_grad():
        logits = loaded.model(**inputs).logits[0, -1]
        assert torch.equal(logits, vlm.model(**inputs).logits[0, -1])
        other = vlm.model(**vlm.build_inputs([frames], [INSTRUCTION], states=closed)).logits[0, -1]
        assert not torch.allclose(logits, other)
    sample = dict(num_samples=2, do_sample=True, max_new_tokens=8, seed=0)
    assert loaded.generate_captions(frames, INSTRUCTION, state=state[0], **sample) == \
        vlm.generate_captions(frames, INSTRUCTION, state=state[0], **sample)

    plain = NextEventVLM.from_config(tokenizer)
    assert not plain.reads_state
    assert torch.equal(plain.build_inputs([frames], [INSTRUCTION], states=state)["input_ids"],
                       plain.build_inputs([frames], [INSTRUCTION])["input_ids"])


@pytest.mark.parametrize("states, message", [
    (None, r"reads proprioception: pass states of shape \(1, 4\)"),
    (np.zeros((1, 3)), r"states must have shape \(1, 4\), got \(1, 3\)"),
    (np.array([[0.5, 0.0, np.nan, 1.0]]), "NaN or infinite"),
])
def test_state_reading_vlm_names_missing_or_bad_states(tokenizer, frames, states, message):
    vlm = NextEventVLM.from_config(tokenizer, reads_state=True)
    with pytest.raises(ValueError, match=message):
        vlm.generate_captions_batch([frames], [INSTRUCTION], max_new_tokens=4, states=states)


def test_missing_checkpoint_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        NextEventVLM.from_pretrained(tmp_path)


# -- bad inputs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 64, 64), np.uint8), "shape"),
    (np.zeros((4, 64, 64, 4), np.uint8), "shape"),
    (np.zeros((4, 60, 64, 3), np.uint8), "multiple of"),
    (np.zeros((4, 64, 64, 3), np.float32), "uint8"),
    (np.full((4, 64, 64, 3), np.nan, np.float32), "NaN"),
    ([[0]], "numpy array"),
])
def test_bad_frames_raise(vlm, bad, message):
    with pytest.raises(ValueError, match=message):
        vlm.generate_captions(bad, INSTRUCTION)


@pytest.mark.parametrize("instruction", ["", "   ", None])
def test_empty_instruction_raises(vlm, frames, instruction):
    with pytest.raises(ValueError, match="instruction"):
        vlm.generate_captions(frames, instruction)


def test_bad_sampling_arguments_raise(vlm, frames):
    with pytest.raises(ValueError, match="do_sample"):
        vlm.generate_captions(frames, INSTRUCTION, num_samples=2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        vlm.generate_captions(frames, INSTRUCTION, max_new_tokens=4, min_new_tokens=5)
    with pytest.raises(ValueError, match="temperature"):
        vlm.generate_captions(frames, INSTRUCTION, num_samples=2, do_sample=True, temperature=0.0)


def test_long_instruction_is_truncated_with_a_warning(vlm, frames):
    with pytest.warns(UserWarning, match="truncated"):
        captions = vlm.generate_captions(frames, " ".join([INSTRUCTION] * 20), max_new_tokens=4)
    assert len(captions) == 1


def test_batched_captions_match_one_by_one(vlm, frames):
    """Left-padded batches give each clip the greedy caption it gets alone."""
    clips = [frames, frames[::-1].copy()]
    instructions = [INSTRUCTION, "open the drawer and then push the red button"]
    batched = vlm.generate_captions_batch(clips, instructions, max_new_tokens=6, min_new_tokens=6)
    alone = [vlm.generate_captions(c, i, max_new_tokens=6, min_new_tokens=6) for c, i in zip(clips, instructions)]
    assert batched == alone


def test_graphed_greedy_decoder_matches_generate(tokenizer, frames):
    """Our static-cache decoder (CUDA graphs on a GPU, the same loop here) gives generate()'s tokens,
    left-padded batches included. Weights are perturbed so the captions are not one repeated token."""
    vlm = NextEventVLM.from_config(tokenizer)
    torch.manual_seed(1)
    for p in vlm.model.parameters():
        p.data += torch.randn_like(p) * 0.2
    clips = [frames, frames[::-1].copy()]
    instructions = [INSTRUCTION, "open the drawer and then push the red button"]
    ours = vlm.generate_captions_batch(clips, instructions, max_new_tokens=10, min_new_tokens=10,
                                       cache_implementation="graphed")
    reference = vlm.generate_captions_batch(clips, instructions, max_new_tokens=10, min_new_tokens=10)
    assert ours == reference and len(set(ours[0][0])) > 3
    assert vlm.generate_captions_batch(clips, instructions, max_new_tokens=10, cache_implementation="graphed") == \
        vlm.generate_captions_batch(clips, instructions, max_new_tokens=10)
