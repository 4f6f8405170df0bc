"""Experts succeed, random actions do not: the floor and the ceiling of every later score."""

import pytest

from vans_sim.env import RoboDeskEnv
from vans_sim.experts import ScriptedExpert
from vans_sim.policies import RandomPolicy
from vans_sim.tasks import TASKS

SEEDS = range(100, 106)  # a sample; `vans-sim score --episodes 100` runs the full check


def run(task, split, seed, act):
    env = RoboDeskEnv(task, split=split, observe_image=False)
    obs, info = env.reset(seed=seed)
    events = [info["event_index"]]
    while True:
        obs, _, terminated, truncated, info = env.step(act(obs))
        events.append(info["event_index"])
        if terminated or truncated:
            return info, events


@pytest.mark.parametrize("split", ["train", "heldout"])
@pytest.mark.parametrize("task", list(TASKS))
def test_expert_succeeds(task, split):
    for seed in SEEDS:
        expert = ScriptedExpert(task)
        info, events = run(task, split, seed, expert.act)
        assert info["success"], f"{task} seed {seed} stuck at event {info['event']}"
        assert info["events_done"] == len(TASKS[task].events)
        # events are reached in order and each one is visited
        assert events == sorted(events) and set(events) == set(range(len(TASKS[task].events)))


def test_random_policy_rarely_succeeds():
    successes = episodes = 0
    for task in TASKS:
        policy = RandomPolicy(task, 1, seed=0)
        for seed in range(4):
            info, _ = run(task, "heldout", seed, lambda obs: policy.act({k: v[None] for k, v in obs.items()})[0])
            successes += info["success"]
            episodes += 1
    assert successes / episodes <= 0.05
