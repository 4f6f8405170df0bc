"""Demonstration datasets in robomimic's HDF5 layout, and a reader that needs no torch.

A dataset is one file, ``demo.hdf5``::

    data/                              attrs: total (steps), env_args (JSON), vans_sim_version
      demo_0/                          attrs: num_samples, task, instruction, split, seed,
                                              success, perturbed, noise_std, event_names (JSON)
        actions        (N, 4)  float32    the action taken at each step
        rewards        (N,)    float32
        dones          (N,)    uint8      1 on the step that succeeded
        states         (N, nq+nv) float64 MuJoCo qpos and qvel before each action
        events         (N,)    int16      index into event_names of the event in progress
        captions       (N,)    str        caption of that event
        obs/image      (N, S, S, 3) uint8 camera frame before each action
        obs/ee_pos     (N, 3), obs/gripper (N, 1), obs/object_state (N, 26)
        next_obs/...   the same low-dimensional keys after each action
    mask/train, mask/valid, mask/successful   robomimic filter keys: arrays of demo names

Open it with ``h5py`` (or robomimic's ``SequenceDataset`` with ``obs_keys=("image", ...)``), or with
:class:`DemoDataset` here, which also iterates over next-event samples.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

OBS_KEYS = ("image", "ee_pos", "gripper", "object_state")
LOW_DIM_KEYS = ("ee_pos", "gripper", "object_state")
DATASET_FILE = "demo.hdf5"
RECORD_ARGS = "record_args.json"  # the settings of the vans-sim record run that made the folder


class DatasetError(ValueError):
    """A dataset file is missing, corrupt, truncated or not in the expected layout."""


@dataclass
class Episode:
    """One recorded episode, as numpy arrays."""

    task: str
    instruction: str
    split: str
    seed: int
    success: bool
    perturbed: bool  # recorded with action noise, or a DAgger branch from a state another policy reached
    event_names: list[str]
    images: np.ndarray  # (N, S, S, 3) uint8
    actions: np.ndarray  # (N, 4)
    ee_pos: np.ndarray
    gripper: np.ndarray
    object_state: np.ndarray
    events: np.ndarray  # (N,) int
    captions: list[str]
    noise_std: float = 0.0  # the action noise it was recorded with (0 for the expert and its DAgger branches)
    axis_speeds: tuple[float, float, float] = (1.0, 1.0, 1.0)  # the expert's factors on dx, dy, dz

    def full_speed_actions(self) -> np.ndarray:
        """The actions with dx, dy and dz divided by the episode's ``axis_speeds``: what the expert at full
        speed does from each state this episode visited (exact for an episode recorded without noise,
        whose slowed actions never reach the clip)."""
        actions = np.array(self.actions, dtype=np.float32)
        actions[:, :3] /= np.asarray(self.axis_speeds, dtype=np.float32)
        return np.clip(actions, -1.0, 1.0)

    def __len__(self) -> int:
        return len(self.actions)

    def event_starts(self) -> list[int]:
        """Step indices where a new event begins (always including 0)."""
        changes = np.flatnonzero(np.diff(self.events)) + 1
        return [0, *changes.tolist()]


@dataclass
class NextEventSample:
    """Context clip plus instruction, and what happens next: its caption, frames and actions."""

    context: np.ndarray  # (T, S, S, 3) uint8, the last one is the current frame
    instruction: str
    caption: str  # caption of the next event
    event: str
    frames: np.ndarray  # (K, S, S, 3) uint8, the frames after the current one
    actions: np.ndarray  # (K * stride, 4) the actions from the current frame on
    action_mask: np.ndarray  # (K * stride,) bool, False where the episode had ended
    task: str
    episode: int
    step: int


def write_episode(group: h5py.Group, ep: dict) -> None:
    """Write one episode (``dict`` of arrays and attributes, see :func:`record.rollout`) into ``group``."""
    n = len(ep["actions"])
    group.attrs["num_samples"] = n
    for key in ("task", "instruction", "split", "seed", "success", "perturbed", "noise_std"):
        group.attrs[key] = ep[key]
    group.attrs["event_names"] = json.dumps(ep["event_names"])
    group.attrs["axis_speeds"] = ep.get("axis_speeds", [1.0, 1.0, 1.0])  # the expert's factors on dx, dy, dz
    group.create_dataset("actions", data=np.asarray(ep["actions"], np.float32))
    group.create_dataset("rewards", data=np.asarray(ep["rewards"], np.float32))
    group.create_dataset("dones", data=np.asarray(ep["dones"], np.uint8))
    group.create_dataset("states", data=np.asarray(ep["states"], np.float64))
    group.create_dataset("events", data=np.asarray(ep["events"], np.int16))
    group.create_dataset("captions", data=ep["captions"], dtype=h5py.string_dtype())
    obs = group.create_group("obs")
    images = np.asarray(ep["obs"]["image"], np.uint8)
    obs.create_dataset("image", data=images, chunks=(1, *images.shape[1:]), compression="gzip", compression_opts=4)
    for key in LOW_DIM_KEYS:
        obs.create_dataset(key, data=np.asarray(ep["obs"][key], np.float32))
    next_obs = group.create_group("next_obs")
    for key in LOW_DIM_KEYS:
        next_obs.create_dataset(key, data=np.asarray(ep["next_obs"][key], np.float32))


def open_hdf5(path: Path, mode: str = "r") -> h5py.File:
    """Open an HDF5 file, turning h5py's low-level errors into one that names the file."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset file not found: {path}")
    try:
        return h5py.File(path, mode)
    except OSError as e:
        raise DatasetError(f"{path}: corrupt or truncated HDF5 file ({e})") from e


def resolve_dataset_path(path: str | Path) -> Path:
    path = Path(path)
    return path / DATASET_FILE if path.is_dir() else path


class DemoDataset:
    """Read a ``vans-sim record`` dataset.

    >>> ds = DemoDataset("data/train")          # the folder or its demo.hdf5
    >>> len(ds), ds.episode(0).task
    >>> for sample in ds.next_event_samples(context_frames=4, future_frames=8):
    ...     sample.caption, sample.frames.shape
    """

    def __init__(self, path: str | Path):
        self.path = resolve_dataset_path(path)
        self._file = open_hdf5(self.path)
        if "data" not in self._file:
            raise DatasetError(f"{self.path}: no 'data' group; not a robomimic-layout dataset")
        try:
            self.env_args = json.loads(self._file["data"].attrs["env_args"])
            names = list(self._file["data"].keys())
        except (KeyError, OSError, json.JSONDecodeError) as e:
            raise DatasetError(f"{self.path}: unreadable dataset header ({e})") from e
        self.demo_names = sorted(names, key=lambda n: int(n.split("_")[1]))
        # recordings made before these settings existed had no shadows and the desk camera alone
        env_kwargs = self.env_args.get("env_kwargs", {})
        self.shadows = bool(env_kwargs.get("shadows", False))
        self.cameras = tuple(env_kwargs.get("cameras", ("desk",)))

    @property
    def scene_kwargs(self) -> dict:
        """The ``RoboDeskEnv`` keyword arguments that render scenes as this recording's were."""
        return {"shadows": self.shadows, "cameras": self.cameras}

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "DemoDataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.demo_names)

    def filter_key(self, key: str) -> list[str]:
        """Demo names under ``mask/<key>`` (robomimic filter keys: train, valid, successful)."""
        return [n.decode() if isinstance(n, bytes) else str(n) for n in self._file[f"mask/{key}"][()]]

    def episode(self, index: int) -> Episode:
        name = self.demo_names[index]
        try:
            g = self._file["data"][name]
            a = g.attrs
            return Episode(
                task=str(a["task"]), instruction=str(a["instruction"]), split=str(a["split"]),
                seed=int(a["seed"]), success=bool(a["success"]), perturbed=bool(a["perturbed"]),
                event_names=json.loads(a["event_names"]),
                images=g["obs/image"][()], actions=g["actions"][()], ee_pos=g["obs/ee_pos"][()],
                gripper=g["obs/gripper"][()], object_state=g["obs/object_state"][()],
                events=g["events"][()].astype(np.int64),
                captions=[c.decode() if isinstance(c, bytes) else str(c) for c in g["captions"][()]],
                noise_std=float(a["noise_std"]),
                axis_speeds=tuple(float(v) for v in a.get("axis_speeds", (1.0, 1.0, 1.0))),
            )
        except (KeyError, OSError, ValueError) as e:
            raise DatasetError(f"{self.path}: episode {name} is corrupt or incomplete ({e})") from e

    def episodes(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self.episode(i)

    def next_event_samples(
        self,
        context_frames: int = 4,
        future_frames: int = 8,
        stride: int = 1,
        every: int | None = None,
        include_perturbed: bool = False,
        successful_only: bool = True,
    ) -> Iterator[NextEventSample]:
        """Yield (context, instruction) -> (next caption, next frames, actions) samples.

        Args:
            context_frames (`int`): T frames of context, ``stride`` steps apart, ending at the
                current frame; the first frame is repeated where the episode had not started.
            future_frames (`int`): K frames after the current one, ``stride`` steps apart; the last
                frame is repeated past the episode's end.
            stride (`int`): steps between frames.
            every (`int`, *optional*): anchor a sample every ``every`` steps. By default a sample is
                anchored where each event begins, so the caption names the event that comes next.
            include_perturbed (`bool`): also use episodes recorded with action noise.
            successful_only (`bool`): skip episodes whose task did not succeed.
        """
        if min(context_frames, future_frames, stride) < 1:
            raise ValueError("context_frames, future_frames and stride must be >= 1")
        for index in range(len(self)):
            ep = self.episode(index)
            if (ep.perturbed and not include_perturbed) or (successful_only and not ep.success):
                continue
            n = len(ep)
            anchors = ep.event_starts() if every is None else list(range(0, n, every))
            for t in anchors:
                ctx_idx = np.clip(t - stride * np.arange(context_frames - 1, -1, -1), 0, n - 1)
                fut_idx = np.clip(t + stride * np.arange(1, future_frames + 1), 0, n - 1)
                act_idx = t + np.arange(future_frames * stride)
                mask = act_idx < n
                actions = np.zeros((len(act_idx), ep.actions.shape[1]), np.float32)
                actions[mask] = ep.actions[act_idx[mask]]
                yield NextEventSample(
                    context=ep.images[ctx_idx], instruction=ep.instruction, caption=ep.captions[t],
                    event=ep.event_names[ep.events[t]], frames=ep.images[fut_idx], actions=actions,
                    action_mask=mask, task=ep.task, episode=index, step=t,
                )
