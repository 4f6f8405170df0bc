"""Configuration of the inverse-dynamics model (IDM)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


POOLINGS = ("flatten", "mean_max")


@dataclass
class IDMConfig:
    """Sizes of :class:`~vans_engine.models.idm.InverseDynamicsModel`.

    Args:
        image_size (`int`, defaults to 64): side of each square view.
        action_dim (`int`, defaults to 4): dx, dy, dz, gripper.
        state_dim (`int`, defaults to 4): proprioception (tool point and gripper opening), used by
            the pair head when given.
        channels (`tuple[int, ...]`): widths of the stride-2 convolutions of the pair encoder; the
            last feature map is ``image_size / 2**len(channels)`` on a side.
        hidden_dim (`int`, defaults to 256): width of the pair feature and of the heads.
        pooling (`str`, defaults to `"flatten"`): how the last feature map becomes the pair feature.
            ``"flatten"`` feeds every cell to one linear layer, which gives each image position its own
            weights; ``"mean_max"`` pools the map (mean and max per channel) first, so that a motion
            is read alike wherever it happens, including positions the training scenes never show.
        chunk_kernel (`int`, defaults to 3): temporal kernel of the chunk head, which lets each
            action see its neighbours' transitions.
        chunk_state (`bool`, defaults to False): the chunk head also reads the proprioception at the
            current frame. A monocular 64-pixel view hardly shows motion along the camera's axis;
            the tool point's position says where the gripper is in depth.
        state_mean, state_std (`tuple[float, ...]`, *optional*): the training data's proprioception
            statistics; when given, both heads read ``(state - mean) / std``.
        chunk_modes (`int`, defaults to 1): how many whole action chunks the chunk head proposes. With
            1 it regresses one chunk by mean squared error, which on frames that show a motion only in
            part is the mean of the motions they allow: shorter than any one of them. With more, it is
            a mixture of Gaussians over chunks trained by likelihood, and the planner runs the mean of
            the most probable one, a single motion rather than an average of several.
        cameras (`tuple[str, ...]`, defaults to `("desk",)`): the simulator views side by side in each
            frame, as ``RoboDeskEnv(cameras=...)`` renders them: a frame is ``image_size`` high and
            ``image_size * len(cameras)`` wide. The pair encoder reads each view on its own, with the
            same convolutions, and joins their features: a second view across the first one's line of
            sight shows the motion that view hides.
    """

    image_size: int = 64
    action_dim: int = 4
    state_dim: int = 4
    channels: tuple[int, ...] = (32, 64, 128, 128)
    hidden_dim: int = 256
    chunk_kernel: int = 3
    pooling: str = "flatten"
    chunk_state: bool = False
    state_mean: tuple[float, ...] | None = None
    state_std: tuple[float, ...] | None = None
    chunk_modes: int = 1
    cameras: tuple[str, ...] = ("desk",)

    def __post_init__(self):
        self.channels = tuple(self.channels)
        self.cameras = tuple(self.cameras)
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras must be one or more distinct view names, got {list(self.cameras)!r}")
        for name in ("state_mean", "state_std"):
            stats = getattr(self, name)
            if stats is not None:
                if len(stats) != self.state_dim:
                    raise ValueError(f"{name} must have state_dim = {self.state_dim} entries, got {len(stats)}")
                setattr(self, name, tuple(float(v) for v in stats))
        if (self.state_mean is None) != (self.state_std is None):
            raise ValueError("state_mean and state_std go together: give both or neither")
        if self.state_std is not None and min(self.state_std) <= 0:
            raise ValueError(f"state_std must be positive, got {self.state_std}")
        if self.image_size % (2 ** len(self.channels)):
            raise ValueError(f"image_size {self.image_size} must be divisible by 2**len(channels) = "
                             f"{2 ** len(self.channels)}")
        for name in ("action_dim", "state_dim", "hidden_dim", "chunk_modes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.chunk_kernel < 1 or self.chunk_kernel % 2 == 0:
            raise ValueError(f"chunk_kernel must be a positive odd number, got {self.chunk_kernel}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["cameras"] = list(self.cameras)
        for name in ("state_mean", "state_std"):
            if d[name] is not None:
                d[name] = list(d[name])
        return d
