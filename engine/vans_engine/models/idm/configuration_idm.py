"""Configuration of the inverse-dynamics model (IDM)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class IDMConfig:
    """Sizes of :class:`~vans_engine.models.idm.InverseDynamicsModel`.

    Args:
        image_size (`int`, defaults to 64): side of the square frames.
        action_dim (`int`, defaults to 4): dx, dy, dz, gripper.
        state_dim (`int`, defaults to 4): proprioception (tool point and gripper opening), used by
            the pair head when given.
        channels (`tuple[int, ...]`): widths of the stride-2 convolutions of the pair encoder; the
            last feature map is ``image_size / 2**len(channels)`` on a side.
        hidden_dim (`int`, defaults to 256): width of the pair feature and of the heads.
        chunk_kernel (`int`, defaults to 3): temporal kernel of the chunk head, which lets each
            action see its neighbours' transitions.
    """

    image_size: int = 64
    action_dim: int = 4
    state_dim: int = 4
    channels: tuple[int, ...] = (32, 64, 128, 128)
    hidden_dim: int = 256
    chunk_kernel: int = 3

    def __post_init__(self):
        self.channels = tuple(self.channels)
        if self.image_size % (2 ** len(self.channels)):
            raise ValueError(f"image_size {self.image_size} must be divisible by 2**len(channels) = "
                             f"{2 ** len(self.channels)}")
        for name in ("action_dim", "state_dim", "hidden_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.chunk_kernel < 1 or self.chunk_kernel % 2 == 0:
            raise ValueError(f"chunk_kernel must be a positive odd number, got {self.chunk_kernel}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d
