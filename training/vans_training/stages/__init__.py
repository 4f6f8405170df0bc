"""The training stages, by CLI verb."""

from __future__ import annotations

from importlib import import_module

# verb -> "module:Class", imported on demand so that one stage's imports do not slow another's start.
STAGES = {
    "vlm-sft": "vans_training.stages.vlm_sft:VLMSFTStage",
    "vdm": "vans_training.stages.vdm:VDMStage",
    "distill": "vans_training.stages.distill:DistillStage",
    "idm": "vans_training.stages.idm:IDMStage",
    "feature-idm": "vans_training.stages.feature_idm:FeatureIDMStage",
    "alignment": "vans_training.stages.alignment:AlignmentStage",
    "grpo-vlm": "vans_training.stages.grpo_vlm:GRPOVLMStage",
    "grpo-vdm": "vans_training.stages.grpo_vdm:GRPOVDMStage",
    "grpo-joint": "vans_training.stages.grpo_joint:GRPOJointStage",
}


def get_stage(name: str):
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; known stages: {', '.join(STAGES)}")
    module, _, cls = STAGES[name].partition(":")
    return getattr(import_module(module), cls)
