"""Batched policies for scoring and recording, found by name through Python entry points.

A policy acts for a batch of environments running one task. Other packages add policies by
declaring an entry point in the ``vans_sim.policies`` group, for example::

    [project.entry-points."vans_sim.policies"]
    planner = "vans_engine.policy:PlannerPolicy"

``vans-sim score --policy planner`` then finds it. A ``module:Class`` path works too.

The interface, which a new policy implements::

    class MyPolicy:
        needs_image: bool  # whether act() reads obs["image"]
        def __init__(self, task: str, num_envs: int, seed: int = 0, **options): ...
        def reset(self, env_ids: np.ndarray) -> None: ...  # those environments started a new episode
        def act(self, obs: dict[str, np.ndarray]) -> np.ndarray: ...  # batched obs -> (num_envs, 4)
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Protocol

import numpy as np

from vans_sim.env import ACTION_DIM
from vans_sim.experts import ScriptedExpert

ENTRY_POINT_GROUP = "vans_sim.policies"


class Policy(Protocol):
    needs_image: bool

    def reset(self, env_ids: np.ndarray) -> None: ...

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray: ...


def unbatch(obs: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    return {k: v[i] for k, v in obs.items()}


class ExpertPolicy:
    """The scripted expert of the task, one instance per environment.

    Args:
        noise_std (`float`, defaults to 0): standard deviation of Gaussian noise added to the
            expert's actions (then clipped), for recording off-expert transitions.
        axis_speeds (`Sequence[float]`, *optional*): factors in (0, 1] on the expert's dx, dy and dz.
            The expert moves the tool straight at its target, so that every axis arrives at once and a
            model trained on it can take the arrival of the axis it sees best (x, across the camera's
            view) for the arrival of all three; an axis slowed down arrives later, and the expert, which
            acts from what it observes, still gets there.
    """

    needs_image = False

    def __init__(self, task: str, num_envs: int, seed: int = 0, noise_std: float = 0.0,
                 axis_speeds: Sequence[float] | None = None):
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.axis_speeds = np.ones(3) if axis_speeds is None else np.asarray(axis_speeds, dtype=np.float64)
        if self.axis_speeds.shape != (3,) or not np.all((self.axis_speeds > 0) & (self.axis_speeds <= 1)):
            raise ValueError(f"axis_speeds must be 3 factors in (0, 1], got {list(np.ravel(self.axis_speeds))}")
        self.experts = [ScriptedExpert(task) for _ in range(num_envs)]
        self.noise_std = float(noise_std)
        self.rng = np.random.default_rng(seed)

    def reset(self, env_ids: np.ndarray) -> None:
        for i in env_ids:
            self.experts[i].reset()

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        actions = np.stack([expert.act(unbatch(obs, i)) for i, expert in enumerate(self.experts)])
        actions[:, :3] *= self.axis_speeds
        if self.noise_std > 0:
            actions = actions + self.rng.normal(0.0, self.noise_std, actions.shape)
        return np.clip(actions, -1.0, 1.0).astype(np.float32)


class RandomPolicy:
    """Uniform random actions in [-1, 1]: the floor every other policy is compared with."""

    needs_image = False

    def __init__(self, task: str, num_envs: int, seed: int = 0):
        self.num_envs = num_envs
        self.rng = np.random.default_rng(seed)

    def reset(self, env_ids: np.ndarray) -> None:
        pass

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, (self.num_envs, ACTION_DIM)).astype(np.float32)


def available_policies() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def load_policy_class(name: str) -> type:
    """Find a policy class by entry-point name (``expert``) or import path (``pkg.module:Class``)."""
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"cannot import policy {name!r}: {e}") from e
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not matches:
        raise ValueError(
            f"unknown policy {name!r}; installed policies: {', '.join(available_policies()) or 'none'}"
            " (or give module:Class)")
    return matches[0].load()
