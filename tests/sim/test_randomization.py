import numpy as np
import pytest

from vans_sim import randomization, scene
from vans_sim.randomization import RANGES, sample_initial_state, split_intervals


def inside(value, intervals):
    return any(lo <= value <= hi for lo, hi in intervals)


@pytest.mark.parametrize("key", [k for k, (_, _, stripes) in RANGES.items() if stripes > 1])
def test_split_ranges_are_disjoint(key):
    train, heldout = split_intervals(key, "train"), split_intervals(key, "heldout")
    for a0, a1 in train:
        for b0, b1 in heldout:
            assert a1 <= b0 or b1 <= a0, (key, (a0, a1), (b0, b1))
    lo, hi, _ = RANGES[key]
    covered = sum(b - a for a, b in train + heldout)
    assert covered == pytest.approx(hi - lo)


@pytest.mark.parametrize("split", randomization.SPLITS)
def test_samples_stay_in_their_split(split):
    rng = np.random.default_rng(0)
    for _ in range(200):
        s = sample_initial_state(rng, split)
        for x, y in s.object_xy.values():
            assert inside(x, split_intervals("object_x", split))
        xs = list(s.object_xy.values())
        for i in range(len(xs)):
            for j in range(i):
                assert np.hypot(xs[i][0] - xs[j][0], xs[i][1] - xs[j][1]) >= randomization.MIN_OBJECT_DISTANCE
        assert inside(s.ee_pos[0], split_intervals("ee_x", split))
        assert inside(s.light, split_intervals("light", split))
        assert inside(s.desk_shift, split_intervals("desk_shift", split))
        for yaw in s.object_yaw.values():
            assert inside(yaw, split_intervals("object_yaw", split))


def test_unknown_split():
    with pytest.raises(ValueError, match="unknown split 'test'"):
        sample_initial_state(np.random.default_rng(0), "test")


def test_overrides_draw_the_named_quantities_from_the_other_split():
    rng = np.random.default_rng(0)
    for _ in range(200):
        s = sample_initial_state(rng, "heldout", {"ee_x": "train", "ee_y": "train", "ee_z": "train"})
        assert inside(s.ee_pos[0], split_intervals("ee_x", "train"))
        assert inside(s.ee_pos[1], split_intervals("ee_y", "train"))
        assert inside(s.ee_pos[2] - scene.DESK_TOP, split_intervals("ee_z", "train"))
        assert inside(s.light, split_intervals("light", "heldout"))
        for x, _ in s.object_xy.values():
            assert inside(x, split_intervals("object_x", "heldout"))


def test_no_overrides_draw_the_same_scenes_as_before():
    plain = sample_initial_state(np.random.default_rng(3), "heldout")
    assert sample_initial_state(np.random.default_rng(3), "heldout", {}) == plain
    assert sample_initial_state(np.random.default_rng(3), "heldout", {"light": "heldout"}) == plain


@pytest.mark.parametrize("overrides, message", [
    ({"ee_w": "train"}, "unknown randomized quantity 'ee_w'"),
    ({"ee_x": "test"}, "unknown split 'test' for ee_x"),
])
def test_bad_overrides_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        sample_initial_state(np.random.default_rng(0), "heldout", overrides)
