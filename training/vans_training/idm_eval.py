"""The IDM alone on true frames: its error per action component on a recorded dataset.

The closed loop of the oracle-video policy says how often an IDM fed the expert's true future solves
a task; this says along which axis it errs. Every anchor of every episode (``anchor_every`` steps
apart) gives the current frame plus the K recorded frames after it; the IDM's chunk is compared with
the K recorded actions, step by step, up to the episode's end. The recording's frames must show the
IDM's cameras.

    vans-train idm-eval --model models/vans-desk-64 --data data/heldout --out reports/idm-eval

writes ``OUT/idm_eval.json`` (overall and per task: RMSE of dx, dy, dz and gripper, the chunk MSE of
the planner's first ``replan_every`` actions and of all K, the gripper's sign accuracy, the mean
recorded |action| per component for scale, and the sample count) and ``OUT/idm_eval.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vans_training.data import NextEventData, to_model_frames
from vans_training.policies import ACTION_COMPONENTS, load_idm


def component_scores(predicted: np.ndarray, recorded: np.ndarray, replan_every: int) -> dict[str, float]:
    """Scores of (S, K, 4) predicted chunks against (S, K, 4) recorded actions, NaN where the episode
    had ended (a mask in the data)."""
    errors, scores = predicted - recorded, {}
    for c, name in enumerate(ACTION_COMPONENTS):
        scores[f"rmse_{name}"] = float(np.sqrt(np.nanmean(errors[..., c] ** 2)))
        scores[f"mean_abs_{name}"] = float(np.nanmean(np.abs(recorded[..., c])))
    scores["chunk_mse"] = float(np.nanmean(errors ** 2))
    scores["first_actions_mse"] = float(np.nanmean(errors[:, :replan_every] ** 2))
    valid = ~np.isnan(recorded[..., 3])
    scores["gripper_sign_accuracy"] = float(((predicted[..., 3] > 0) == (recorded[..., 3] > 0))[valid].mean())
    scores["samples"] = int(len(errors))
    return scores


@torch.no_grad()
def evaluate_idm(model: str | Path, data: str | Path, out: str | Path, split: str = "all", anchor_every: int = 4,
                 batch_size: int = 64, progress: bool = True) -> dict:
    """Score the IDM of ``model`` (a planner checkpoint or an IDM folder) on ``data``'s true frames;
    write ``idm_eval.json`` and ``idm_eval.md`` into ``out`` and return the scores."""
    idm, k = load_idm(model)
    samples = NextEventData(data, split, context_frames=1, future_frames=k, anchor_every=anchor_every,
                            successful_only=False)
    if tuple(samples.cameras) != tuple(idm.config.cameras) or samples.image_size != idm.config.image_size:
        raise ValueError(f"{data} shows {samples.image_size}-pixel views of {list(samples.cameras)}, the IDM in "
                         f"{model} reads {idm.config.image_size}-pixel views of {list(idm.config.cameras)}")
    predicted, recorded, tasks = [], [], []
    for start in tqdm(range(0, len(samples), batch_size), desc="idm-eval", disable=not progress):
        batch = samples.batch(np.arange(start, min(start + batch_size, len(samples))))
        frames = to_model_frames(np.concatenate([batch.context[:, -1:], batch.future], axis=1))
        predicted.append(idm.predict_action_chunk(frames, torch.from_numpy(batch.state[:, 0])).float().numpy())
        recorded.append(np.where(batch.action_mask[..., None], batch.actions, np.nan))
        tasks += batch.tasks
    predicted, recorded, tasks = np.concatenate(predicted), np.concatenate(recorded), np.asarray(tasks)
    replan_every = max(1, k // 2)
    report = {"model": str(model), "data": str(data), "split": split, "anchor_every": anchor_every,
              "future_frames": k, "replan_every": replan_every, "cameras": list(idm.config.cameras),
              "overall": component_scores(predicted, recorded, replan_every),
              "per_task": {task: component_scores(predicted[tasks == task], recorded[tasks == task], replan_every)
                           for task in sorted(set(tasks))}}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "idm_eval.json").write_text(json.dumps(report, indent=2))
    (out / "idm_eval.md").write_text(format_report(report))
    return report


def format_report(report: dict) -> str:
    header = ("| | samples | RMSE dx | RMSE dy | RMSE dz | RMSE gripper | first-actions MSE | chunk MSE "
              "| gripper sign |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")

    def row(name: str, s: dict) -> str:
        return (f"| {name} | {s['samples']} | {s['rmse_x']:.3f} | {s['rmse_y']:.3f} | {s['rmse_z']:.3f} | "
                f"{s['rmse_gripper']:.3f} | {s['first_actions_mse']:.4f} | {s['chunk_mse']:.4f} | "
                f"{s['gripper_sign_accuracy']:.1%} |")

    o = report["overall"]
    rows = [row("**all**", o)] + [row(task, s) for task, s in report["per_task"].items()]
    return (f"# The IDM on true frames\n\nModel `{report['model']}` (cameras {', '.join(report['cameras'])}) on "
            f"`{report['data']}` ({report['split']}), an anchor every {report['anchor_every']} steps, K = "
            f"{report['future_frames']}; first actions: the {report['replan_every']} a plan runs. For scale, the "
            f"recorded mean |action|: dx {o['mean_abs_x']:.3f}, dy {o['mean_abs_y']:.3f}, dz {o['mean_abs_z']:.3f}, "
            f"gripper {o['mean_abs_gripper']:.3f}.\n\n" + header + "\n" + "\n".join(rows) + "\n")
