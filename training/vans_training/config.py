"""Training configurations: one dataclass per stage, read from ``training/configs/NAME.yaml``.

Every stage shares :class:`TrainConfig` (data, optimisation, cadence, output) and adds its own fields.
A YAML file holds any subset of the fields; ``--set key=value`` flags on the command line override
it (values are parsed as YAML, so ``--set max_steps=20`` is an int and ``--set lr=3e-4`` a float).

>>> config = load_config(VDMTrainConfig, "training/configs/vdm.yaml", ["max_steps=20"])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from vans_engine.models.vdm.parameterization import PREDICTIONS


@dataclass
class TrainConfig:
    """What every stage shares.

    Args:
        data (`str`): a ``vans-sim record`` dataset (folder or ``demo.hdf5``), recorded on the train split.
        output_dir (`str`): where checkpoints, logs and the final model go; a second run resumes here.
        context_frames (`int`): T, frames of context (the planner's ``context_frames``).
        future_frames (`int`): K, frames of the next event (the planner's ``future_frames``).
        anchor_every (`int`): a sample is anchored every this many steps of each episode; 4 matches
            the planner, which replans every K / 2 steps.
        max_steps (`int`): optimiser steps.
        batch_size (`int`): samples per step and process.
        lr (`float`), min_lr (`float`), warmup_steps (`int`): linear warm-up, then cosine decay to ``min_lr``.
        weight_decay (`float`), grad_clip (`float`): AdamW decay and gradient-norm clip (0 = off).
        log_freq, eval_freq, save_freq (`int`): steps between logs, evaluations and checkpoints.
        eval_samples (`int`): validation samples per evaluation.
        seed (`int`): seeds the weights and the batches; ranks offset it.
        device (`str`): ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        num_threads (`int`): CPU threads for PyTorch (0 = its default).
        keep_checkpoints (`int`): step checkpoints kept on disk besides the last.
    """

    data: str = "data/train"
    output_dir: str = "runs/stage"
    context_frames: int = 4
    future_frames: int = 8
    anchor_every: int = 4
    max_steps: int = 1000
    batch_size: int = 16
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    log_freq: int = 10
    eval_freq: int = 250
    save_freq: int = 250
    eval_samples: int = 64
    seed: int = 0
    device: str = "auto"
    num_threads: int = 0
    keep_checkpoints: int = 2

    def __post_init__(self):
        positive = ("context_frames", "future_frames", "anchor_every", "max_steps", "batch_size", "log_freq",
                    "eval_freq", "save_freq", "eval_samples")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.context_frames > self.future_frames:
            raise ValueError(f"context_frames ({self.context_frames}) must not exceed future_frames "
                             f"({self.future_frames})")
        if not 0 < self.min_lr <= self.lr:
            raise ValueError(f"need 0 < min_lr <= lr, got min_lr={self.min_lr}, lr={self.lr}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        if self.warmup_steps < 0 or self.grad_clip < 0 or self.keep_checkpoints < 0 or self.num_threads < 0:
            raise ValueError("warmup_steps, grad_clip, keep_checkpoints and num_threads must be >= 0")


@dataclass
class VLMSFTConfig(TrainConfig):
    """``vlm-sft``: next-event caption prediction with cross-entropy.

    Args:
        vlm (`dict`): sizes forwarded to ``vans_engine.models.vlm.vlm_config`` (``hidden_size``, ...).
        vocab_size (`int`): the byte-level BPE tokenizer's vocabulary, trained on every task's
            instruction and captions.
        reads_state (`bool`): the prompt also states the proprioception at the newest context frame
            (tool point and gripper opening), which the planner passes at run time.
        expert_branches (`bool`): also train on the DAgger branches of ``data`` (``vans-train dagger``),
            captioned with the event in progress at states the planner reached and the expert never does.
        init_from (`str`): fine-tune this trained VLM (a ``vlm-sft`` output or a VLM folder, such as a
            planner checkpoint's ``vlm/``) with its tokenizer, instead of fresh weights; ``vlm`` and ``vocab_size`` are then
            unused, and ``reads_state`` must match it.
    """

    output_dir: str = "runs/vlm-sft"
    vlm: dict[str, Any] = field(default_factory=dict)
    vocab_size: int = 600
    reads_state: bool = False
    expert_branches: bool = False
    init_from: str = ""


@dataclass
class VDMTrainConfig(TrainConfig):
    """``vdm``: the flow-matching teacher, conditioned on the context frames and the caption.

    Args:
        vdm (`dict`): sizes forwarded to ``vans_engine.models.vdm.vdm_config``.
        prediction (`str`): ``"current_frame_residual"`` (the transformer predicts the clean video
            minus the current frame, starting from "nothing moves", trained on the clean video) or
            ``"velocity"`` (the plain flow-matching target).
        shift (`float`): the scheduler's timestep shift.
        eval_steps (`int`): Euler steps of the samples drawn at each evaluation.
        ema_decay (`float`): exponential moving average of the weights that is saved (0 = off).
        init_from (`str`): start from this trained VDM (a stage output or a planner checkpoint) instead
            of fresh weights; ``vdm`` sizes are then ignored.
        action_model (`str`): an IDM (a stage output or a planner checkpoint) that reads actions from
            the predicted clean video, for the action-consistency term; evaluations then also report
            its error on sampled videos (``action_mse``).
        action_weight (`float`): weight of the action-consistency term (0 = off; needs ``action_model``).
        unrolled_steps (`int`): 0 trains by flow matching at random noise levels; N > 0 runs the N-step
            Euler sampler with gradients and trains every step's predicted clean video (for a few-step
            student: the path the planner deploys).
        random_shift (`int`), photometric_jitter (`float`): per-sample translation (pixels) and colour
            change, the same for its context and future frames, as the ``idm`` stage's (0 = off).
        expert_branches (`bool`): also train on the DAgger branches of ``data`` (``vans-train dagger``):
            the expert's moves from the states a driver, the deployed planner say, reached and the
            expert never does (the gripper pressed against the desk or the edge of its reach).
    """

    output_dir: str = "runs/vdm"
    vdm: dict[str, Any] = field(default_factory=dict)
    prediction: str = "current_frame_residual"
    shift: float = 1.0
    eval_steps: int = 16
    ema_decay: float = 0.999
    init_from: str = ""
    action_model: str = ""
    action_weight: float = 0.0
    unrolled_steps: int = 0
    random_shift: int = 0
    photometric_jitter: float = 0.0
    expert_branches: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.unrolled_steps < 0:
            raise ValueError(f"unrolled_steps must be >= 0, got {self.unrolled_steps}")
        if self.random_shift < 0 or not 0 <= self.photometric_jitter < 1:
            raise ValueError(f"random_shift must be >= 0 and photometric_jitter in [0, 1), got "
                             f"{self.random_shift} and {self.photometric_jitter}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        if self.action_weight < 0:
            raise ValueError(f"action_weight must be >= 0, got {self.action_weight}")
        if self.action_weight > 0 and not self.action_model:
            raise ValueError("action_weight > 0 needs action_model (the IDM that reads the actions)")


@dataclass
class DistillConfig(VDMTrainConfig):
    """``distill``: a few-step student from the teacher by rectified-flow reflow.

    The teacher's ODE maps noise ``z`` to a video ``x``; the student starts from the teacher's weights
    and is trained by flow matching on those deterministic (z, x) pairs, whose straight-line paths one
    or two Euler steps follow closely.

    Args:
        teacher (`str`): the ``vdm`` stage's output folder (its ``final/`` model) or a VDM folder.
        teacher_steps (`int`): Euler steps of the teacher when it makes pairs.
        num_pairs (`int`): (noise, video) pairs drawn from the teacher on training samples.
        pair_batch_size (`int`): teacher samples per call while making pairs.
        student_steps (`int`): the student's sampling steps, used in evaluation and written to the model.
        real_data_fraction (`float`): share of each batch that is flow matching on recorded videos, which
            keeps the student from drifting towards the teacher's mistakes.

    ``action_model`` / ``action_weight`` add the action-consistency term to the student's loss, scored
    against each sample's recorded actions.
    """

    output_dir: str = "runs/distill"
    teacher: str = "runs/vdm"
    teacher_steps: int = 16
    num_pairs: int = 2048
    pair_batch_size: int = 32
    student_steps: int = 2
    real_data_fraction: float = 0.25
    lr: float = 1e-4
    min_lr: float = 1e-5
    ema_decay: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if min(self.teacher_steps, self.num_pairs, self.pair_batch_size, self.student_steps) < 1:
            raise ValueError("teacher_steps, num_pairs, pair_batch_size and student_steps must be >= 1")
        if not 0 <= self.real_data_fraction < 1:
            raise ValueError(f"real_data_fraction must be in [0, 1), got {self.real_data_fraction}")
        if self.init_from:
            raise ValueError("distill's student starts from its teacher: set teacher, not init_from")


@dataclass
class IDMTrainConfig(TrainConfig):
    """``idm``: inverse dynamics on expert and perturbed transitions.

    Args:
        idm (`dict`): settings forwarded to ``InverseDynamicsModel`` (``channels``, ``hidden_dim``,
            ``pooling``, ``chunk_state``); with ``init_from`` they override the started model's, which
            may only gain ``chunk_state`` (zero-initialised, so the start is unchanged).
        image_size (`int`): frame side.
        frame_noise (`float`): std of Gaussian noise added to the future frames (in [-1, 1] units), so
            that the chunk head tolerates the VDM's imperfect frames.
        blur_fraction (`float`): share of clips whose future frames are blurred, for the same reason.
        photometric_jitter (`float`): per-clip random brightness, contrast and colour gains of up to
            this fraction, the same for every frame of a clip: the held-out split has lights and desk
            colours the train split never shows (0 = off).
        random_shift (`int`): largest translation in pixels, drawn per clip and per axis and applied
            alike to every frame of the clip (edges replicated), as in DrQ/RAD: positions the train
            split never shows (held-out object stripes, gripper starts) then look like ones it does
            (0 = off).
        init_from (`str`): an IDM folder (or an idm stage's output) to start from instead of random
            weights, for fine-tuning.
        generated_future_model (`str`): a planner checkpoint whose VDM renders, from a sample's context
            and a caption, the future frames that ``generated_future_fraction`` of the clips are trained
            on instead of the recorded ones: the planner feeds the IDM its VDM's frames, whose motion is
            fainter and less exact than a camera's, and the recorded actions stay the labels.
        generated_future_fraction (`float`): share of training clips with generated futures (0 = off).
        generated_future_captions (`str`): the caption the VDM renders from: ``"recorded"`` (the event's
            true caption) or ``"vlm"`` (the checkpoint's VLM names it from the context, as the deployed
            planner does, mistakes included).
    """

    output_dir: str = "runs/idm"
    anchor_every: int = 2
    idm: dict[str, Any] = field(default_factory=dict)
    image_size: int = 64
    frame_noise: float = 0.05
    blur_fraction: float = 0.3
    photometric_jitter: float = 0.0
    random_shift: int = 0
    init_from: str = ""
    generated_future_model: str = ""
    generated_future_fraction: float = 0.0
    generated_future_captions: str = "recorded"

    def __post_init__(self):
        super().__post_init__()
        if self.generated_future_captions not in ("recorded", "vlm"):
            raise ValueError(f"generated_future_captions must be 'recorded' or 'vlm', "
                             f"got {self.generated_future_captions!r}")
        if not 0.0 <= self.generated_future_fraction <= 1.0:
            raise ValueError(f"generated_future_fraction must be in [0, 1], got {self.generated_future_fraction}")
        if self.generated_future_fraction and not self.generated_future_model:
            raise ValueError("generated_future_fraction needs generated_future_model, a planner checkpoint")
        if not 0 <= self.random_shift < self.image_size // 2:
            raise ValueError(f"random_shift must be in [0, {self.image_size // 2}) pixels, got {self.random_shift}")


@dataclass
class FeatureIDMTrainConfig(TrainConfig):
    """``feature-idm``: an action head on the VDM's tokens (``VideoFeatureIDM``), the VDM frozen.

    Args:
        vdm_model (`str`): the planner checkpoint whose VDM, scheduler, denoising steps and caption
            encoder make the tokens, as they will at run time.
        feature_step (`int`): the denoising step whose tokens the head reads (0: the first).
        head (`dict`): sizes forwarded to ``VideoFeatureIDM`` (``cell_dim``, ``hidden_dim``, ``pool``,
            ``num_members``: an ensemble of that many heads, each trained on its own bootstrap weights).
        feature_batch_size (`int`): samples per VDM call while the tokens are computed.
        expert_branches (`bool`): also train on the DAgger branches of ``data`` (``vans-train dagger
            --driver planner``): the expert's next moves from the states the planner itself reaches.
        object_weight (`float`): above 0, the head also learns where every object stands relative to the
            tool point (an auxiliary task, from the recorded object state), with this weight beside the
            actions' loss; 0 learns the actions alone.
        photometric_jitter (`float`): for a head with ``frame_keypoints``, the strength of the random
            brightness, contrast and colour of each training sample's current frame (0: none).
        full_speed_actions (`bool`): in episodes whose expert moved its axes at different speeds
            (``vans-sim record --axis-speed-fraction``), learn the actions the expert takes at full speed
            from the states it visited: those episodes then teach where the tool goes from a state in
            which one axis has arrived before the others, and not to move slowly.
    """

    output_dir: str = "runs/feature-idm"
    vdm_model: str = "models/vans-desk-64"
    feature_step: int = 0
    head: dict[str, Any] = field(default_factory=dict)
    feature_batch_size: int = 64
    expert_branches: bool = False
    object_weight: float = 0.0
    photometric_jitter: float = 0.0
    full_speed_actions: bool = False
    batch_size: int = 128
    lr: float = 1e-3
    min_lr: float = 1e-5
    eval_samples: int = 512

    def __post_init__(self):
        super().__post_init__()
        if self.feature_step < 0 or self.feature_batch_size < 1:
            raise ValueError("feature_step must be >= 0 and feature_batch_size >= 1")
        if self.object_weight < 0 or not 0 <= self.photometric_jitter < 1:
            raise ValueError(f"object_weight must be >= 0 and photometric_jitter in [0, 1), got "
                             f"{self.object_weight} and {self.photometric_jitter}")
        if {"num_objects", "object_weight"} & set(self.head):
            raise ValueError("set the object offsets task with object_weight, not under head")


@dataclass
class AlignmentConfig(TrainConfig):
    """``alignment``: the video-caption contrastive model (our stand-in for CLIP).

    Args:
        embed_dim (`int`): width of the shared embedding.
        channels (`list[int]`): widths of the frame encoder's stride-2 convolutions.
        image_size (`int`): frame side.
    """

    output_dir: str = "runs/alignment"
    embed_dim: int = 128
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 128])
    image_size: int = 64


def _caption_reward_weights() -> dict[str, float]:
    return {"rouge_l": 1.0, "caption_sim": 1.0, "video_sim": 1.0, "format": 1.0, "sim": 0.0}


def _video_reward_weights() -> dict[str, float]:
    return {"video_sim": 1.0, "alignment": 1.0, "static": -1.0, "sim": 0.0}


@dataclass
class GRPOConfig(TrainConfig):
    """What both Joint-GRPO stages share (VANS section 3.3).

    Each step draws ``batch_size`` samples, a group of ``group_size`` rollouts per sample, scores
    them, and normalises the rewards within each group into advantages; the policy is then updated
    ``updates_per_rollout`` times on that group with the clipped objective and a KL term to the
    policy it started from (the SFT model in stage 1, the stage-1-frozen VDM's start in stage 2).

    Args:
        model (`str`): the planner checkpoint the stage starts from (VLM, VDM, IDM, alignment model).
        group_size (`int`): G, rollouts per sample (8 in VANS).
        beta (`float`): weight of the KL term (0.004 in VANS).
        clip_range (`float`): the ratio's clip range (1e-3 in VANS).
        updates_per_rollout (`int`): optimiser steps on each group of rollouts; the clip only binds
            from the second one on.
        reward_weights (`dict[str, float]`): weight of each reward term (``vans_training.rewards``);
            ``sim`` is the sim-grounded reward (``vans_training.sim_reward``), off at 0.
    """

    model: str = "models/vans-desk-64-sft"
    batch_size: int = 2
    lr: float = 1e-5
    min_lr: float = 1e-6
    warmup_steps: int = 0
    group_size: int = 8
    beta: float = 0.004
    clip_range: float = 1e-3
    updates_per_rollout: int = 1
    reward_weights: dict[str, float] = field(default_factory=_caption_reward_weights)
    eval_samples: int = 32

    def __post_init__(self):
        super().__post_init__()
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (advantages are relative to the group), got {self.group_size}")
        if self.beta < 0 or not 0 < self.clip_range < 1 or self.updates_per_rollout < 1:
            raise ValueError("need beta >= 0, 0 < clip_range < 1 and updates_per_rollout >= 1")


@dataclass
class GRPOVLMConfig(GRPOConfig):
    """``grpo-vlm`` (stage 1): the VLM learns captions whose videos, rendered by the frozen VDM, fit.

    Args:
        temperature (`float`): sampling temperature of the G captions.
        max_new_tokens (`int`): longest caption; a caption cut there fails the format term.
        render_steps (`int`): denoising steps of the frozen VDM when it renders a caption.
    """

    output_dir: str = "runs/grpo-vlm"
    temperature: float = 1.0
    max_new_tokens: int = 20
    render_steps: int = 2


@dataclass
class GRPOVDMConfig(GRPOConfig):
    """``grpo-vdm`` (stage 2): the VDM learns videos that fit the frozen stage-1 VLM's captions.

    Args:
        vlm (`str`): the stage-1 output (or any VLM folder) that writes the anchor captions; the
            model's VLM when empty.
        vdm (`str`): the VDM to tune (a ``vdm`` / ``distill`` output or a VDM folder): the teacher or
            the distilled student; the model's VDM (the deployed student) when empty.
        prediction (`str`): how the tuned VDM's output is read; must be what it was trained with.
        sde_steps (`int`): levels of the SDE rollout (``vans_training.flow_sde``); all but the last
            step are stochastic.
        noise_level (`float`): ``a`` of the SDE.
        anchor_min_rouge (`float`): anchor captions whose ROUGE-L to the recorded caption is below
            this are dropped and drawn again (VANS: 0.6).
        anchor_draws (`int`): draws of an anchor caption before the sample falls back to the recorded one.
        eval_steps (`int`): steps of the deterministic sampler in evaluation (the deployed student's 2,
            or the teacher's 16).
    """

    output_dir: str = "runs/grpo-vdm"
    lr: float = 2e-5
    min_lr: float = 2e-6
    vlm: str = ""
    vdm: str = ""
    prediction: str = "current_frame_residual"
    sde_steps: int = 2
    noise_level: float = 0.7
    anchor_min_rouge: float = 0.6
    anchor_draws: int = 4
    eval_steps: int = 2
    reward_weights: dict[str, float] = field(default_factory=_video_reward_weights)

    def __post_init__(self):
        super().__post_init__()
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        if self.sde_steps < 2:
            raise ValueError(f"sde_steps must be >= 2 (the last step is deterministic), got {self.sde_steps}")
        if self.noise_level <= 0 or self.anchor_draws < 1 or self.eval_steps < 1:
            raise ValueError("need noise_level > 0, anchor_draws >= 1 and eval_steps >= 1")


@dataclass
class GRPOJointConfig(GRPOVDMConfig):
    """``grpo-joint``: the "all-in-one" ablation of VANS: VLM and VDM updated together in one stage,
    each rollout a caption and its video, scored by every caption and video term at once.

    Args:
        temperature (`float`), max_new_tokens (`int`): as in ``grpo-vlm``.
    """

    output_dir: str = "runs/grpo-joint"
    lr: float = 1e-5
    min_lr: float = 1e-6
    temperature: float = 1.0
    max_new_tokens: int = 20
    reward_weights: dict[str, float] = field(default_factory=lambda: {**_caption_reward_weights(),
                                                                      **_video_reward_weights()})


C = TypeVar("C", bound=TrainConfig)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["max_steps=20", "vdm.num_layers=2"]`` -> ``{"max_steps": 20, "vdm": {"num_layers": 2}}``."""
    result: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override must look like key=value, got {item!r}")
        *parents, leaf = key.split(".")
        node = result
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    return result


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None) -> C:
    """Build ``cls`` from a YAML file and ``key=value`` overrides; unknown keys are an error naming them."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of config fields, got {type(values).__name__}")
    for key, value in parse_overrides(overrides or []).items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; known fields: {sorted(types)}")
    for key, value in values.items():
        # YAML 1.1 reads 1e-4 (no dot) as a string: numbers are parsed by the field's own type
        number = {"float": float, "int": int}.get(getattr(types[key], "__name__", types[key]))
        if isinstance(value, str) and number is not None:
            try:
                values[key] = number(value)
            except ValueError:
                raise ValueError(f"{cls.__name__}.{key} must be {number.__name__}, got {value!r}") from None
    return cls(**values)
