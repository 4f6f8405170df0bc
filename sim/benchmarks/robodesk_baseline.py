"""Steps per second of the original ``robodesk`` 1.0.0 environment, for comparison with vans_sim.

Runs in its own venv (``setup_robodesk_venv.sh``), since robodesk needs dm_control, an older
mujoco and the retired gym API:

    MUJOCO_GL=egl .bench-venvs/robodesk/bin/python sim/benchmarks/robodesk_baseline.py --steps 300 --json out.json

Random actions, a 64x64 image at every step (robodesk renders 120x120 and resizes), resets
included when an episode ends; construction and the first reset are not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="timed steps")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()

    import robodesk

    env = robodesk.RoboDesk(task="open_slide", reward="dense", action_repeat=1, episode_length=500, image_size=64)
    rng = np.random.default_rng(0)
    env.reset()
    started = time.perf_counter()
    for _ in range(args.steps):
        result = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        obs, done = result[0], result[2]
        assert obs["image"].shape == (64, 64, 3)
        if done:
            env.reset()
    elapsed = time.perf_counter() - started
    result = {"env": "robodesk 1.0.0", "steps": args.steps, "steps_per_s": args.steps / elapsed,
              "ms_per_step": elapsed / args.steps * 1000, "image_size": 64, "mujoco_gl": os.environ.get("MUJOCO_GL")}
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
