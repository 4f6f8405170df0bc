"""Next-event samples for every stage, read once from a ``vans-sim record`` dataset into memory.

A sample is anchored at step ``t`` of an episode: the context is the ``T`` frames ending at ``t`` (the
first frame repeated before the episode starts), the next event is the caption of the event in
progress at ``t`` (what the robot does next), its clip is the ``K`` frames after ``t`` and its actions
are the ``K`` actions from ``t`` on, each leading into one of those frames. Frames are stored once
per episode; samples are index pairs, so a dense anchoring costs no memory.

Splits follow the episode seeds, so they never share an initial state: seeds ending in 8 are
``valid``, seeds ending in 9 are ``test``, the rest ``train``. A dataset recorded on the simulator's
``heldout`` split is used whole (``split="all"``) as the held-out-scene test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from vans_sim.dataset import DemoDataset
from vans_sim.scene import OBJECTS
from vans_sim.state import OBJECT_STATE_LAYOUT

SPLITS = ("train", "valid", "test", "all")


def seed_split(seed: int) -> str:
    """The split an episode of this seed belongs to."""
    return {8: "valid", 9: "test"}.get(seed % 10, "train")


@dataclass
class NextEventBatch:
    """A batch of samples as numpy arrays (uint8 frames, channels last) and lists of strings."""

    context: np.ndarray  # (B, T, S, S * V, 3) uint8 for V cameras side by side; the last frame is the current one
    future: np.ndarray  # (B, K, S, S * V, 3) uint8
    actions: np.ndarray  # (B, K, 4) float32
    action_mask: np.ndarray  # (B, K) bool, False past the episode's end
    state: np.ndarray  # (B, K, 4) float32, tool point and gripper opening before each action
    object_pos: np.ndarray  # (B, K, O, 3) float32, each of vans_sim's O objects' centre before each action
    captions: list[str]
    events: list[str]
    instructions: list[str]
    tasks: list[str]
    seeds: np.ndarray  # (B,) int, the episode's reset seed
    steps: np.ndarray  # (B,) int, the anchor step t within the episode
    scene_splits: list[str]  # the simulator split the episode was recorded on (train or heldout)

    def __len__(self) -> int:
        return len(self.captions)


def task_corpus() -> list[str]:
    """Every instruction and event caption of the simulator's tasks."""
    from vans_sim.tasks import TASKS

    texts = []
    for task in TASKS.values():
        texts.append(task.instruction)
        for event in task.events:
            texts.extend(event.captions)
    return sorted(set(texts))


def to_model_frames(frames: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, N, H, W, 3) uint8 -> (B, N, 3, H, W) float in [-1, 1], the engine's layout."""
    return torch.from_numpy(frames).to(device).permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0


class NextEventData:
    """Every anchored sample of one split of a dataset.

    Args:
        path (`str | Path`): the dataset folder or its ``demo.hdf5``.
        split (`str`): ``train``, ``valid``, ``test`` (by seed) or ``all``.
        context_frames (`int`), future_frames (`int`): T and K.
        anchor_every (`int`): anchor a sample every this many steps.
        include_perturbed (`bool`): use the episodes recorded with action noise (for inverse dynamics).
        expert_branches (`bool`): also use the DAgger rounds' branches (``vans-train dagger``): the
            scripted expert's moves, without noise, from states another policy reached, which a
            recording of the expert alone never visits.
        successful_only (`bool`): skip episodes that failed their task.
        full_speed_actions (`bool`): label the episodes recorded with slowed axes (``vans-sim record
            --axis-speed-fraction``) with the expert's full-speed actions from the same states
            (``Episode.full_speed_actions``), not the slowed ones it took.
        tasks (`list[str]`, *optional*): keep only these tasks.
    """

    def __init__(self, path: str | Path, split: str = "train", context_frames: int = 4, future_frames: int = 8,
                 anchor_every: int = 4, include_perturbed: bool = False, successful_only: bool = True,
                 tasks: list[str] | None = None, progress: bool = False, expert_branches: bool = False,
                 full_speed_actions: bool = False):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if min(context_frames, future_frames, anchor_every) < 1:
            raise ValueError("context_frames, future_frames and anchor_every must be >= 1")
        self.context_frames, self.future_frames = context_frames, future_frames
        images, actions, state, object_pos, captions, starts, lengths = [], [], [], [], [], [], []
        self.instructions, self.tasks, self.seeds, self.event_names = [], [], [], []
        self.scene_splits = []
        offset = 0
        with DemoDataset(path) as dataset:
            self.path = dataset.path
            self.shadows = dataset.shadows  # the scenes were rendered with the sun's shadows
            self.cameras = dataset.cameras  # the views side by side in each frame
            self.scene_kwargs = dataset.scene_kwargs  # RoboDeskEnv's arguments that render as these frames
            for index in tqdm(range(len(dataset)), desc=f"reading {Path(path).name} ({split})", disable=not progress):
                ep = dataset.episode(index)
                branch = ep.perturbed and ep.noise_std == 0  # never marked successful: read apart
                wanted = (((include_perturbed or not ep.perturbed) and (ep.success or not successful_only))
                          or (expert_branches and branch))
                if not wanted:
                    continue
                if (split != "all" and seed_split(ep.seed) != split) or (tasks and ep.task not in tasks):
                    continue
                n = len(ep)
                images.append(ep.images)
                actions.append(ep.full_speed_actions() if full_speed_actions else ep.actions.astype(np.float32))
                state.append(np.concatenate([ep.ee_pos, ep.gripper], axis=1).astype(np.float32))
                object_pos.append(np.stack([ep.object_state[:, slice(*OBJECT_STATE_LAYOUT[f"{obj}_pos"])]
                                            for obj in OBJECTS], axis=1).astype(np.float32))
                captions.extend(ep.captions)
                self.event_names.extend(ep.event_names[e] for e in ep.events)
                starts.append(offset)
                lengths.append(n)
                offset += n
                self.instructions.append(ep.instruction)
                self.tasks.append(ep.task)
                self.seeds.append(ep.seed)
                self.scene_splits.append(ep.split)
        if not starts:
            raise ValueError(f"{path}: no episodes in split {split!r}"
                             f"{' for tasks ' + ','.join(tasks) if tasks else ''}")
        self.images = np.concatenate(images)
        self.actions = np.concatenate(actions)
        self.state = np.concatenate(state)
        self.object_pos = np.concatenate(object_pos)
        self.captions = captions
        self.starts, self.lengths = np.asarray(starts), np.asarray(lengths)
        # (episode, step) of every anchor
        self.anchors = np.asarray([(e, t) for e, n in enumerate(lengths) for t in range(0, n, anchor_every)])

    @property
    def image_size(self) -> int:
        """The side of each square view (the frames' height)."""
        return int(self.images.shape[1])

    @property
    def frame_size(self) -> tuple[int, int]:
        """``(height, width)`` of a frame: the views side by side."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    def __len__(self) -> int:
        return len(self.anchors)

    def caption_corpus(self) -> list[str]:
        """Every distinct caption and instruction, for tokenizers and caches."""
        return sorted(set(self.captions) | set(self.instructions))

    def batch(self, indices: np.ndarray) -> NextEventBatch:
        """The samples at ``indices`` (positions in :attr:`anchors`)."""
        episodes, steps = self.anchors[indices, 0], self.anchors[indices, 1]
        start, last = self.starts[episodes][:, None], (self.starts[episodes] + self.lengths[episodes] - 1)[:, None]
        t = (self.starts[episodes] + steps)[:, None]
        context_index = np.clip(t - np.arange(self.context_frames - 1, -1, -1), start, last)
        future_steps = t + np.arange(1, self.future_frames + 1)
        action_steps = t + np.arange(self.future_frames)
        mask = action_steps <= last
        action_index = np.minimum(action_steps, last)
        flat = t[:, 0]
        return NextEventBatch(
            context=self.images[context_index], future=self.images[np.minimum(future_steps, last)],
            actions=np.where(mask[..., None], self.actions[action_index], 0.0).astype(np.float32),
            action_mask=mask, state=self.state[action_index], object_pos=self.object_pos[action_index],
            captions=[self.captions[i] for i in flat], events=[self.event_names[i] for i in flat],
            instructions=[self.instructions[e] for e in episodes], tasks=[self.tasks[e] for e in episodes],
            seeds=np.asarray([self.seeds[e] for e in episodes], int), steps=steps.astype(int),
            scene_splits=[self.scene_splits[e] for e in episodes])

    def random_batch(self, rng: np.random.Generator, batch_size: int) -> NextEventBatch:
        return self.batch(rng.integers(0, len(self), batch_size))

    def fixed_indices(self, count: int, seed: int = 0) -> np.ndarray:
        """A reproducible subset of ``count`` samples (all of them if there are fewer), for evaluation."""
        rng = np.random.default_rng(seed)
        return np.sort(rng.permutation(len(self))[:count])


def train_and_valid(config, **options) -> tuple[NextEventData, NextEventData]:
    """The train and valid splits of ``config.data`` with the config's T, K and anchoring; ``options``
    override those or add :class:`NextEventData` arguments."""
    args = {"context_frames": config.context_frames, "future_frames": config.future_frames,
            "anchor_every": config.anchor_every, **options}
    return NextEventData(config.data, "train", progress=True, **args), NextEventData(config.data, "valid", **args)
