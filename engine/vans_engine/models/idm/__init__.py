import json
from pathlib import Path

from vans_engine.models.idm.configuration_idm import IDMConfig
from vans_engine.models.idm.modeling_idm import InverseDynamicsModel
from vans_engine.models.idm.modeling_video_feature_idm import CURRENT_FRAME, MEMBER_WEIGHTS, VDM_FEATURES, VideoFeatureIDM

# The planner's action component: what reads the VDM's answer and gives the actions.
IDM_CLASSES = {cls.__name__: cls for cls in (InverseDynamicsModel, VideoFeatureIDM)}


def load_idm(path: str | Path) -> InverseDynamicsModel | VideoFeatureIDM:
    """Load an action component folder as the class its ``config.json`` names, in eval mode."""
    config = Path(path) / InverseDynamicsModel.config_name
    if not config.is_file():
        raise FileNotFoundError(f"action model config not found: {config}")
    name = json.loads(config.read_text()).get("_class_name", InverseDynamicsModel.__name__)
    if name not in IDM_CLASSES:
        raise ValueError(f"{config}: unknown action model {name!r}; known: {', '.join(IDM_CLASSES)}")
    return IDM_CLASSES[name].from_pretrained(path).eval()


def require_frame_reader(idm: InverseDynamicsModel | VideoFeatureIDM, where: str, purpose: str) -> InverseDynamicsModel:
    """``idm`` if it reads frames; a ValueError naming ``where`` and ``purpose`` if it reads VDM tokens."""
    if idm.reads_vdm_features:
        raise ValueError(f"{where} is a VideoFeatureIDM, which reads the VDM's tokens, not frames: {purpose} "
                         f"needs an InverseDynamicsModel")
    return idm


__all__ = ["CURRENT_FRAME", "IDMConfig", "IDM_CLASSES", "InverseDynamicsModel", "MEMBER_WEIGHTS", "VDM_FEATURES", "VideoFeatureIDM", "load_idm", "require_frame_reader"]
