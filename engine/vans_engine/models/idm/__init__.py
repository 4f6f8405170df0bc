from vans_engine.models.idm.configuration_idm import IDMConfig
from vans_engine.models.idm.modeling_idm import InverseDynamicsModel

__all__ = ["IDMConfig", "InverseDynamicsModel"]
