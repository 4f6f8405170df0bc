"""``vans-train eval``: next-event metrics of a planner checkpoint (a table like VANS Table 1).

    vans-train eval --model models/vans-desk-64 --data data/heldout --out runs/eval-heldout

For a fixed, seeded subset of next-event samples of DATA (any ``vans-sim record`` output; by default
the held-out-scene test set), the planner predicts the caption and the K frames of the next event
from the context clip and the instruction. Scores, each averaged over the samples:

* caption: ROUGE-L, BLEU-4 (corpus), MiniLM cosine similarity to the recorded caption. Each event
  has three paraphrased captions and an episode records one of them at random, so even a perfect
  predictor scores about 0.78 ROUGE-L against the recorded one; ``rouge_l_multi_ref`` (best over the
  event's paraphrases, as multi-reference captioning benchmarks score) and ``event_accuracy`` (the
  predicted caption is one of the right event's) say how often the event itself is right;
* frames: PSNR and SSIM against the recorded future frames;
* ``alignment``: cosine of the predicted video and the recorded caption under the checkpoint's
  video-caption model (``MODEL/alignment/``), our stand-in for CLIP-T.

Plans are also run in the simulator: each sample's K planned actions are executed from the sample's
exact recorded state (``vans_training.sim_reward``), giving ``plan_event_reached`` (the share of plans
whose actions make the event in progress happen within K steps) and ``plan_sim_reward`` (that, with
partial credit for ending near the recorded expert). They are the closed loop's one-plan version:
cheap, and free of the compounding that makes episodes all-or-nothing. ``plan_action_mse`` is the
squared error of the planned actions to the recorded expert's, before any simulator: what the IDM
could read from the predicted frames; ``plan_motion_length`` (the mean length of the planned xyz
motions, against ``recorded actions``' in the references) and ``plan_motion_cosine`` (their mean
cosine to the recorded ones) split that error into how far and where: a regressor unsure of the
direction predicts short motions.

Reference rows put the numbers in context: the recorded future scored the same way (the ceiling of
``alignment``), the current frame held K times (the floor any video model must beat on PSNR), and the
recorded expert's actions and zero actions run in the simulator (the ceiling and floor of the
``plan_*`` scores).

Writes ``OUT/eval.json`` (the scores, the sample count, per-task and per-event scores, the references),
``OUT/samples.jsonl`` (each sample's captions and scores), ``OUT/eval.md`` and ``OUT/samples.gif``
(current frame, recorded and predicted futures).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from vans_engine.planner import Planner

from vans_training.assemble import ALIGNMENT_DIR
from vans_training.data import NextEventBatch, NextEventData, to_model_frames
from vans_training.metrics import caption_scores, psnr, rouge_l, sentence_embeddings, ssim
from vans_training.models.alignment import VideoCaptionAligner
from vans_training.sim_reward import SimGroundedReward

METRICS = ("rouge_l", "bleu4", "caption_sim", "psnr", "ssim", "alignment")
SIM_METRICS = ("plan_event_reached", "plan_sim_reward")
ACTION_METRICS = ("plan_action_mse", "plan_motion_length", "plan_motion_cosine")
SAMPLES_FILE = "samples.jsonl"


def action_mse(actions: np.ndarray, recorded: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared error of (N, K, A) actions against the recorded ones where ``mask`` (N, K) holds."""
    return float(((actions - recorded) ** 2)[mask].mean())


def motion_scores(actions: np.ndarray, recorded: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The mean length of the xyz part of (N, K, A) actions where ``mask`` (N, K) holds, and its mean
    cosine to the recorded actions' (over the steps where both move)."""
    planned, truth = actions[mask][:, :3], recorded[mask][:, :3]
    lengths, true_lengths = np.linalg.norm(planned, axis=1), np.linalg.norm(truth, axis=1)
    moving = (lengths > 1e-6) & (true_lengths > 1e-6)
    cosine = (planned[moving] * truth[moving]).sum(axis=1) / (lengths[moving] * true_lengths[moving])
    return {"plan_motion_length": float(lengths.mean()),
            "plan_motion_cosine": float(cosine.mean()) if moving.any() else 0.0}


@torch.no_grad()
def alignment_scores(aligner: VideoCaptionAligner, videos: np.ndarray, captions: list[str]) -> np.ndarray:
    """Per-sample cosine of (N, K, S, S * V, 3) uint8 videos with their captions. The aligner was trained
    on the desk camera: of several views side by side it reads the first, the desk view."""
    videos = videos[:, :, :, :videos.shape[2]]
    embeddings = sentence_embeddings(captions)
    scores = [aligner.score(to_model_frames(videos[i:i + 64]), embeddings[i:i + 64]) for i in range(0, len(videos), 64)]
    return torch.cat(scores).numpy()


def frame_scores(frames: np.ndarray, futures: np.ndarray, references: list[str],
                 aligner: VideoCaptionAligner) -> dict[str, np.ndarray]:
    """Per-sample PSNR, SSIM and alignment of predicted (N, K, S, S, 3) frames."""
    return {"psnr": np.array([psnr(p, t) for p, t in zip(frames, futures)]),
            "ssim": np.array([ssim(p, t) for p, t in zip(frames, futures)]),
            "alignment": alignment_scores(aligner, frames, references)}


def score_predictions(captions: list[str], references: list[str], per_sample: dict[str, np.ndarray]) -> dict[str, float]:
    """The six metrics: the caption ones of ``captions`` against ``references``, the frame ones as the
    mean of their :func:`frame_scores`."""
    return {**caption_scores(captions, references), **{k: float(v.mean()) for k, v in per_sample.items()}}


def write_sample_scores(path: Path, indices: np.ndarray, truth: NextEventBatch, captions: list[str],
                        per_sample: dict[str, np.ndarray], right: np.ndarray, reached: np.ndarray) -> None:
    """One JSON line per sample: what it was, what was predicted, and its scores (``vans-train compare``
    pairs two runs' lines by ``index`` for its confidence intervals); ``right`` and ``reached`` are (N,)
    bool: the caption names the event, the plan reaches it."""
    with path.open("w") as f:
        for i, index in enumerate(indices):
            row = {"index": int(index), "task": truth.tasks[i], "event": truth.events[i], "recorded": truth.captions[i],
                   "predicted": captions[i], "rouge_l": rouge_l(captions[i], truth.captions[i]),
                   "event_correct": float(right[i]), **{k: float(v[i]) for k, v in per_sample.items()},
                   "plan_event_reached": float(reached[i])}
            f.write(json.dumps(row) + "\n")


def event_breakdown(tasks: list[str], events: list[str], captions: list[str], right: np.ndarray,
                    reached: np.ndarray) -> dict[str, dict]:
    """Per (task, event in progress): samples, event accuracy, plans reaching it, the commonest caption
    (``right`` and ``reached`` as in :func:`write_sample_scores`). A VLM that reads the instruction more
    than the frames shows here: it writes one caption through all of a task's events."""
    breakdown = {}
    for key in sorted(set(zip(tasks, events))):
        rows = [i for i, k in enumerate(zip(tasks, events)) if k == key]
        breakdown[f"{key[0]}/{key[1]}"] = {
            "samples": len(rows), "event_accuracy": float(right[rows].mean()),
            "plan_event_reached": float(reached[rows].mean()),
            "commonest_caption": Counter(captions[i] for i in rows).most_common(1)[0][0]}
    return breakdown


def format_event_table(breakdown: dict[str, dict]) -> str:
    rows = "\n".join(f"| {name} | {r['samples']} | {r['event_accuracy']:.2f} | {r['plan_event_reached']:.2f} | "
                     f"{r['commonest_caption']} |" for name, r in breakdown.items())
    return ("| task / event in progress | samples | event accuracy | plan reached | commonest caption |\n"
            "|---|---:|---:|---:|---|\n" + rows + "\n")


def event_paraphrases() -> dict[str, tuple[str, ...]]:
    """Every event's paraphrased captions, by event name."""
    from vans_sim.tasks import TASKS

    return {event.name: event.captions for task in TASKS.values() for event in task.events}


def names_event(captions: list[str], events: list[str]) -> np.ndarray:
    """(N,) bool: each caption is one of its event's paraphrases."""
    paraphrases = event_paraphrases()
    return np.array([c in paraphrases[e] for c, e in zip(captions, events)], dtype=bool)


def event_scores(captions: list[str], events: list[str]) -> dict[str, float]:
    """Multi-reference ROUGE-L and event accuracy of predicted captions against the recorded events."""
    paraphrases = event_paraphrases()
    return {"rouge_l_multi_ref": float(np.mean([max(rouge_l(c, r) for r in paraphrases[e])
                                                for c, e in zip(captions, events)])),
            "event_accuracy": float(names_event(captions, events).mean())}


def write_samples_gif(path: Path, current: np.ndarray, futures: np.ndarray, frames: np.ndarray,
                      count: int = 6, scale: int = 2) -> None:
    """A grid: per sample, the recorded future and the predicted one, each starting at the current frame."""
    from vans_sim.report import write_grid_video

    clips = {}
    for i in range(min(count, len(frames))):
        for label, video in (("true", futures[i]), ("pred", frames[i])):
            clip = np.concatenate([current[i][None], video]).repeat(scale, axis=1).repeat(scale, axis=2)
            clips[f"{label} {i}"] = list(clip)
    write_grid_video(clips, path, fps=4, columns=4)


def format_table(result: dict) -> str:
    columns = METRICS + SIM_METRICS + ACTION_METRICS
    header = "| | " + " | ".join(columns) + " |\n|---|" + "---:|" * len(columns) + "\n"

    def row(name: str, values: dict) -> str:
        return f"| {name} | " + " | ".join(f"{values[m]:.3f}" if m in values else "–" for m in columns) + " |\n"

    table = header + row("planner", result)
    for name, values in result["references"].items():
        table += row(name, values)
    table += (f"\nEvent accuracy {result['event_accuracy']:.3f}; ROUGE-L against the best of the event's "
              f"paraphrases {result['rouge_l_multi_ref']:.3f}.\n")
    table += "\n| task | samples | " + " | ".join(METRICS) + " |\n|---|---:|" + "---:|" * len(METRICS) + "\n"
    for task, values in result["per_task"].items():
        table += f"| {task} | {values['samples']} | " + " | ".join(f"{values[m]:.3f}" for m in METRICS) + " |\n"
    return table


def evaluate(model: str | Path, data: str | Path, out: str | Path, split: str = "all", steps: int | None = None,
             samples: int = 256, batch_size: int = 32, backend: str = "torch", seed: int = 0,
             recorded_captions: bool = False) -> dict:
    """Evaluate ``model`` on ``samples`` next-event samples of ``data``; write and return the result.

    With ``recorded_captions`` the VDM (and through it the IDM) is conditioned on each sample's
    recorded caption instead of the VLM's: the VLM is left out, and the caption columns score the
    recorded captions against themselves. Beside the default run, it measures what the VLM's caption
    errors cost the frames and the plans.
    """
    model, out = Path(model), Path(out)
    aligner_folder = model / ALIGNMENT_DIR
    if not (aligner_folder / "config.json").is_file():
        raise FileNotFoundError(f"{aligner_folder}: no alignment model; the alignment score needs one "
                                "(assemble the checkpoint with --alignment)")
    if samples < 1 or batch_size < 1:
        raise ValueError(f"samples and batch_size must be >= 1, got {samples} and {batch_size}")
    planner = Planner.from_pretrained(model, backend=backend)
    aligner = VideoCaptionAligner.from_pretrained(aligner_folder).eval()
    config = planner.config
    dataset = NextEventData(data, split, config.context_frames, config.future_frames, anchor_every=4)
    if tuple(dataset.cameras) != config.cameras:
        raise ValueError(f"{data} shows the cameras {list(dataset.cameras)}, the planner in {model} plans from "
                         f"{list(config.cameras)}: evaluate it on a recording made with --cameras "
                         f"{','.join(config.cameras)}")
    indices = dataset.fixed_indices(samples, seed)
    steps = steps or config.num_inference_steps

    # 1. Predict captions and frames, batch by batch
    captions, frames, actions, started = [], [], [], time.perf_counter()
    for k, chunk in enumerate(tqdm(np.array_split(indices, max(1, len(indices) // batch_size)), desc="eval")):
        batch = dataset.batch(chunk)
        plans = planner.plan_batch(batch.context, batch.instructions, steps=steps, seed=seed + k,
                                   states=batch.state[:, 0], captions=batch.captions if recorded_captions else None)
        captions += [p.caption for p in plans]
        frames.append(np.stack([p.frames for p in plans]))
        actions.append(np.stack([p.actions for p in plans]))
    frames, actions = np.concatenate(frames), np.concatenate(actions)
    seconds = time.perf_counter() - started

    # 2. Score them, overall, per task and for the reference rows
    truth = dataset.batch(indices)
    per_sample = frame_scores(frames, truth.future, truth.captions, aligner)
    result = {**score_predictions(captions, truth.captions, per_sample),
              **event_scores(captions, truth.events), "samples": int(len(indices)), "steps": steps, "model": str(model), "data": str(data),
              "split": split, "backend": backend, "recorded_captions": recorded_captions, "seconds": round(seconds, 1)}
    sim_reward = SimGroundedReward(dataset)
    planned, recorded = sim_reward(indices, actions[:, None]), sim_reward(indices, truth.actions[:, None])
    idle = sim_reward(indices, np.zeros_like(actions[:, None]))
    result["plan_event_reached"] = float(planned.reached.mean())
    result["plan_sim_reward"] = float(planned.rewards.mean())
    result["plan_action_mse"] = action_mse(actions, truth.actions, truth.action_mask)
    result.update(motion_scores(actions, truth.actions, truth.action_mask))
    still = np.repeat(truth.context[:, -1:], config.future_frames, axis=1)
    result["references"] = {
        "recorded future": {"psnr": 100.0, "ssim": 1.0,
                            "alignment": float(alignment_scores(aligner, truth.future, truth.captions).mean())},
        "current frame held": {"psnr": float(np.mean([psnr(s, t) for s, t in zip(still, truth.future)])),
                               "ssim": float(np.mean([ssim(s, t) for s, t in zip(still, truth.future)])),
                               "alignment": float(alignment_scores(aligner, still, truth.captions).mean())},
        "recorded actions": {"plan_event_reached": float(recorded.reached.mean()),
                             "plan_sim_reward": float(recorded.rewards.mean()),
                             **motion_scores(truth.actions, truth.actions, truth.action_mask)},
        "zero actions": {"plan_event_reached": float(idle.reached.mean()), "plan_sim_reward": float(idle.rewards.mean()),
                         "plan_action_mse": action_mse(np.zeros_like(actions), truth.actions, truth.action_mask)},
    }
    result["per_task"] = {}
    for task in sorted(set(truth.tasks)):
        rows = [i for i, t in enumerate(truth.tasks) if t == task]
        result["per_task"][task] = {
            **score_predictions([captions[i] for i in rows], [truth.captions[i] for i in rows],
                                {k: v[rows] for k, v in per_sample.items()}), "samples": len(rows)}
    right, reached = names_event(captions, truth.events), planned.reached[:, 0]
    result["per_event"] = event_breakdown(truth.tasks, truth.events, captions, right, reached)
    result["examples"] = [{"task": truth.tasks[i], "predicted": captions[i], "recorded": truth.captions[i]}
                          for i in range(min(12, len(captions)))]

    # 3. Write the report
    conditioning = "; the VDM conditioned on the recorded captions, not the VLM's" if recorded_captions else ""
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    write_sample_scores(out / SAMPLES_FILE, indices, truth, captions, per_sample, right, reached)
    examples = "\n".join(f"| {e['task']} | {e['predicted']} | {e['recorded']} |" for e in result["examples"])
    (out / "eval.md").write_text(
        f"# Next-event evaluation of `{model}`\n\n{len(indices)} samples of `{data}` (split {split}), "
        f"{steps} denoising steps, {backend} backend, {seconds:.0f} s{conditioning}.\n\n{format_table(result)}\n"
        f"| task | predicted caption | recorded caption |\n|---|---|---|\n{examples}\n\n"
        f"Per event in progress: how often the VLM names it, how often the plan makes it happen, and the "
        f"caption the VLM writes most often there.\n\n{format_event_table(result['per_event'])}\n"
        "![samples](samples.gif)\n")
    write_samples_gif(out / "samples.gif", truth.context[:, -1], truth.future, frames)
    print(format_table(result))
    return result
