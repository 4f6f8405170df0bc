"""Initial-state randomization with two disjoint splits, ``train`` and ``heldout``.

Every randomized quantity has a full range ``[lo, hi]`` cut into ``n`` equal stripes. The ``train``
split draws it from the even stripes (0, 2, ...), the ``heldout`` split from the odd ones. Since each
quantity is drawn from disjoint sets, no heldout initial state can equal a train one: a heldout
scene puts every object at x positions never seen in training (5 cm stripes interleaved with the
training ones), tilts the blocks and starts the gripper at unseen angles and places, and lights and
colours the desk outside the training values. Interleaving (rather than inner versus outer bands)
keeps both splits spread over the whole desk, so both can place three objects far enough apart.

| quantity | full range | stripes | train | heldout |
|---|---|---|---|---|
| object x (each of 3 objects) | -0.30 .. 0.30 m | 6 | -0.30..-0.20, -0.10..0.00, 0.10..0.20 | -0.20..-0.10, 0.00..0.10, 0.20..0.30 |
| object y | -0.10 .. 0.08 m | 1 | whole range | whole range |
| block yaw | -0.3 .. 0.3 rad | 4 | -0.30..-0.15, 0.00..0.15 | -0.15..0.00, 0.15..0.30 |
| gripper start x | -0.15 .. 0.25 m | 2 | -0.15..0.05 | 0.05..0.25 |
| gripper start y | -0.15 .. 0.05 m | 2 | -0.15..-0.05 | -0.05..0.05 |
| gripper start z above desk | 0.15 .. 0.27 m | 2 | 0.15..0.21 | 0.21..0.27 |
| light intensity | 0.40 .. 0.80 | 2 | 0.40..0.60 | 0.60..0.80 |
| desk colour shift | -0.10 .. 0.10 | 2 | -0.10..0.00 | 0.00..0.10 |

(Object y has a single stripe, shared by both splits: x already separates them.) Objects are kept at
least ``MIN_OBJECT_DISTANCE`` apart by redrawing the whole placement, which keeps every draw
inside its split's sets.

``overrides`` draws some quantities from the other split, to tell which of a held-out scene's
differences a policy fails on: ``{"ee_x": "train", "ee_y": "train", "ee_z": "train"}`` gives held-out
desks (objects, light, colour) with the gripper starting where training episodes start it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from vans_sim import scene

SPLITS = ("train", "heldout")
MIN_OBJECT_DISTANCE = 0.12

# quantity -> (lo, hi, number of stripes)
RANGES: dict[str, tuple[float, float, int]] = {
    "object_x": (-0.30, 0.30, 6),
    "object_y": (-0.10, 0.08, 1),
    "object_yaw": (-0.3, 0.3, 4),
    "ee_x": (-0.15, 0.25, 2),
    "ee_y": (-0.15, 0.05, 2),
    "ee_z": (0.15, 0.27, 2),
    "light": (0.40, 0.80, 2),
    "desk_shift": (-0.10, 0.10, 2),
}


def split_intervals(key: str, split: str) -> list[tuple[float, float]]:
    """The intervals ``split`` draws quantity ``key`` from."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    lo, hi, stripes = RANGES[key]
    if stripes == 1:
        return [(lo, hi)]
    width = (hi - lo) / stripes
    first = SPLITS.index(split)
    return [(lo + i * width, lo + (i + 1) * width) for i in range(first, stripes, 2)]


def check_overrides(overrides: Mapping[str, str] | None) -> dict[str, str]:
    """``{quantity: split}`` checked against :data:`RANGES` and :data:`SPLITS`; ``{}`` for None."""
    overrides = dict(overrides or {})
    for key, split in overrides.items():
        if key not in RANGES:
            raise ValueError(f"unknown randomized quantity {key!r}; expected one of {', '.join(RANGES)}")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} for {key}; expected one of {SPLITS}")
    return overrides


def draw(rng: np.random.Generator, key: str, split: str) -> float:
    intervals = split_intervals(key, split)
    lo, hi = intervals[rng.integers(len(intervals))]
    return float(rng.uniform(lo, hi))


@dataclass(frozen=True)
class InitialState:
    object_xy: dict[str, tuple[float, float]]
    object_yaw: dict[str, float]
    ee_pos: tuple[float, float, float]
    light: float
    desk_shift: float


def _place_objects(rng: np.random.Generator, split_of: Callable[[str], str]) -> dict[str, tuple[float, float]]:
    while True:  # redraw the whole placement when one object finds no room
        placed: dict[str, tuple[float, float]] = {}
        for obj in scene.OBJECTS:
            for _ in range(20):
                xy = (draw(rng, "object_x", split_of("object_x")), draw(rng, "object_y", split_of("object_y")))
                if all(np.hypot(xy[0] - o[0], xy[1] - o[1]) >= MIN_OBJECT_DISTANCE for o in placed.values()):
                    placed[obj] = xy
                    break
            else:
                break
        if len(placed) == len(scene.OBJECTS):
            return placed


def sample_initial_state(rng: np.random.Generator, split: str,
                         overrides: Mapping[str, str] | None = None) -> InitialState:
    """A scene of ``split``, each quantity named in ``overrides`` drawn from the split it names instead."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    overrides = check_overrides(overrides)

    def split_of(key: str) -> str:
        return overrides.get(key, split)

    placed = _place_objects(rng, split_of)
    yaw = {obj: draw(rng, "object_yaw", split_of("object_yaw")) for obj in ("upright_block", "flat_block")}
    ee_x, ee_y, ee_z = (draw(rng, f"ee_{axis}", split_of(f"ee_{axis}")) for axis in "xyz")
    ee = (ee_x, ee_y, scene.DESK_TOP + ee_z)
    return InitialState(placed, yaw, ee, draw(rng, "light", split_of("light")),
                        draw(rng, "desk_shift", split_of("desk_shift")))
