from vans_engine.models.vdm.configuration_vdm import (
    CAPTION_LENGTH,
    IMAGE_SIZE,
    IN_CHANNELS,
    NUM_CONTEXT_FRAMES,
    NUM_FRAMES,
    TEXT_DIM,
    make_scheduler,
    vdm_config,
)
from vans_engine.models.vdm.export import export_vdm_onnx
from vans_engine.models.vdm.modeling_vdm import load_vdm, make_vdm
from vans_engine.models.vdm.parameterization import (
    PREDICTIONS,
    CurrentFrameResidual,
    as_denoiser,
    zero_output_layer,
)
from vans_engine.models.vdm.sampling import (
    VideoDiffusionOutput,
    VideoDiffusionSampler,
    check_context_frames,
    flow_matching_inputs,
    normalize_frames,
    pack_model_input,
    sample_training_timesteps,
)
from vans_engine.models.vdm.text_encoder import CaptionEncoder

__all__ = [
    "CAPTION_LENGTH",
    "IMAGE_SIZE",
    "IN_CHANNELS",
    "NUM_CONTEXT_FRAMES",
    "NUM_FRAMES",
    "TEXT_DIM",
    "CaptionEncoder",
    "CurrentFrameResidual",
    "PREDICTIONS",
    "VideoDiffusionOutput",
    "VideoDiffusionSampler",
    "as_denoiser",
    "check_context_frames",
    "export_vdm_onnx",
    "flow_matching_inputs",
    "load_vdm",
    "make_scheduler",
    "make_vdm",
    "normalize_frames",
    "pack_model_input",
    "sample_training_timesteps",
    "vdm_config",
    "zero_output_layer",
]
