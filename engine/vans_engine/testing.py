"""Helpers for tests: a small, complete, randomly initialised planner checkpoint.

>>> from vans_engine.testing import tiny_checkpoint
>>> folder = tiny_checkpoint("/tmp/tiny")          # marked "trained": false in model_index.json
>>> planner = Planner.from_pretrained(folder, backend="onnxruntime")
"""

from __future__ import annotations

from pathlib import Path

import torch

from vans_engine.models.idm import InverseDynamicsModel, VideoFeatureIDM
from vans_engine.models.vdm import CaptionEncoder, make_scheduler, make_vdm
from vans_engine.models.vdm.features import token_layout
from vans_engine.models.vlm import NextEventVLM, train_caption_tokenizer
from vans_engine.planner import Planner, PlannerConfig

# Enough text for the tokenizer to learn the words of desk captions and instructions.
TINY_CORPUS = [
    "push the red button", "push the green button", "push the blue button", "open the drawer",
    "open the sliding panel", "lift the upright block", "put the flat block in the bin",
    "put the ball in the shelf", "stack the upright block on the flat block",
    "the gripper moves above the red button", "the gripper presses the red button",
    "the gripper pulls the drawer open", "the gripper grasps the upright block", "the gripper lifts the ball",
]


# Component sizes: "tiny" for tests, "default" is the architecture the shipped model trains
# (used untrained by benchmarks, whose timings do not depend on the weights).
SIZES = {
    "tiny": {
        "vlm": {"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128, "vision_hidden_size": 32,
                "vision_depth": 1},
        "vdm": {"num_layers": 1, "num_attention_heads": 2, "attention_head_dim": 32, "ffn_dim": 128},
        "idm": {"channels": (16, 32, 32, 32), "hidden_dim": 64},
    },
    "default": {"vlm": {}, "vdm": {}, "idm": {}},
}


def random_planner(size: str = "tiny", config: PlannerConfig | None = None, seed: int = 0,
                   idm_state: bool = False, vlm_state: bool = False, feature_idm: bool = False) -> Planner:
    """A randomly initialised planner (torch backend, CPU) with components of the given ``size``;
    with ``idm_state``, its IDM's chunk head reads proprioception (randomly weighted, so it matters),
    with ``vlm_state``, its VLM's prompt states it; with ``feature_idm``, its actions come from a
    ``VideoFeatureIDM`` on the VDM's first-step tokens instead."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {list(SIZES)}, got {size!r}")
    sizes, config = SIZES[size], config or PlannerConfig()
    torch.manual_seed(seed)
    vlm = NextEventVLM.from_config(train_caption_tokenizer(TINY_CORPUS), reads_state=vlm_state, **sizes["vlm"])
    vdm = make_vdm(**sizes["vdm"])
    idm = InverseDynamicsModel(image_size=config.image_size, chunk_state=idm_state, cameras=config.cameras,
                               **sizes["idm"])
    if feature_idm:
        idm = VideoFeatureIDM(**token_layout(vdm.config, config.frame_size, config.future_frames),
                              image_size=config.image_size, cameras=config.cameras)
    if idm_state and not feature_idm:
        torch.nn.init.normal_(idm.chunk_state_proj.weight, std=0.5)
    return Planner(vlm, CaptionEncoder(), vdm, make_scheduler(), idm, config, backend="torch", trained=False)


def tiny_checkpoint(path: str | Path, config: PlannerConfig | None = None, seed: int = 0, size: str = "tiny",
                    idm_state: bool = False, vlm_state: bool = False, feature_idm: bool = False) -> Path:
    """Write a complete, randomly initialised checkpoint to ``path``, marked untrained; returns the folder."""
    path = Path(path)
    random_planner(size, config, seed, idm_state, vlm_state, feature_idm).save_pretrained(path, trained=False)
    return path
