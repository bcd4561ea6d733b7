"""Benchmark of the gate plate reader on a labelled simulator frame set (issue 6).

Renders >= 600 plate frames with a fixed seed (as `coalgate sim frames` does), reads each
on ONE core (onnxruntime intra-op threads = 1, cv2.setNumThreads(1)) and prints JSON:
exact-plate accuracy per condition, confident-wrong and no-reading counts, the error cases,
p50/p99 latency per 1280x720 frame, and a baseline measured in the same run: RapidOCR's
full-scene text detection + recognition on a subset of the same frames, its text joined
and normalised with the same plate grammar.

It then measures what the gate does: for every ``--gate-every``-th plate of the set, the
same standing truck is rendered ``--truck-frames`` times (same scene, fresh sensor noise and a
sub-pixel shake each frame, JPEG as a camera sends it), each frame is read and the readings
are voted with ``edge_agent.plates.vote`` exactly as the gate does; the voted plate counts
when its confidence reaches the threshold.

    .venv/bin/python scripts/bench_plates.py [--count 632] [--seed 42] [--baseline-every 10]
    .venv/bin/python scripts/bench_plates.py --calibrate   # refit calibration.WEIGHTS
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_agent.plates import PlateReader, PlateReading, vote
from edge_agent.plates.calibration import FEATURE_NAMES, cap, features
from edge_agent.plates.evaluate import Outcome, load_labels, score
from edge_agent.plates.grammar import normalise_plate
from edge_agent.plates.locate import locate
from firmware_sim.camera.frameset import frame_specs, write_frameset
from firmware_sim.camera.render import render_scene


def _imread(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"cannot read {path}")
    return np.asarray(img)


def _pct(ms: list[float]) -> dict[str, float]:
    a = np.array(ms)
    return {"p50": round(float(np.percentile(a, 50)), 1),
            "p99": round(float(np.percentile(a, 99)), 1)}


def _baseline(frames: list[Any]) -> dict[str, Any]:
    from rapidocr_onnxruntime import RapidOCR

    ocr = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)
    ms, correct, wrong = [], 0, 0
    for f in frames:
        img = _imread(f.path)
        t0 = time.perf_counter()
        result, _ = ocr(img)
        ms.append((time.perf_counter() - t0) * 1000)
        texts = [r[1] for r in (result or [])]
        # A double-row plate is two detections; try each text and adjacent pairs.
        options = texts + [a + b for a, b in zip(texts, texts[1:], strict=False)]
        found = [p for p in (normalise_plate(t) for t in options) if p]
        if f.plate and f.plate in found:
            correct += 1
        elif found:
            wrong += 1
    n = max(1, sum(1 for f in frames if f.plate))
    return {"name": "rapidocr full-scene det+rec (PP-OCRv4), 1 thread", "frames": len(frames),
            "accuracy": round(correct / n, 4), "wrong_any": wrong, "latency_ms": _pct(ms)}


def _gate_trucks(count: int, seed: int, every: int, per_truck: int, reader: PlateReader,
                 threshold: float) -> dict[str, Any]:
    """Per-truck accuracy of the gate's vote over ``per_truck`` frames of a standing truck."""
    specs = [s for s in frame_specs(count, seed) if s.plate][::every]
    per: dict[str, dict[str, int]] = {}
    errors = []
    for i, spec in enumerate(specs):
        frames: list[list[PlateReading]] = []
        scene = render_scene(spec.plate, kind=spec.kind or "auto", conditions=spec.conditions,
                             seed=spec.seed)
        for k in range(per_truck):
            frame, _ = scene.expose(camera_seed=spec.seed * 16 + k)
            ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
            if not ok:
                raise SystemExit("JPEG encoding failed")
            frames.append(reader.read(np.asarray(cv2.imdecode(buf, cv2.IMREAD_COLOR))))
        voted = vote(frames, min_confidence=0.0)
        read = voted.text if voted and voted.confidence >= threshold else None
        b = per.setdefault(spec.conditions.tag, {"trucks": 0, "correct": 0, "no_reading": 0,
                                                  "wrong_confident": 0})
        b["trucks"] += 1
        if read == spec.plate:
            b["correct"] += 1
            continue
        kind = "no_reading" if read is None else "wrong_confident"
        b[kind] += 1
        errors.append({"truck": i, "truth": spec.plate, "kind": kind,
                       "voted": voted.text if voted else None,
                       "confidence": round(voted.confidence, 3) if voted else None,
                       "condition": spec.conditions.tag})
    total = {k: sum(b[k] for b in per.values())
             for k in ("trucks", "correct", "no_reading", "wrong_confident")}
    return {"frames_per_truck": per_truck, "threshold": threshold, **total,
            "accuracy": round(total["correct"] / max(1, total["trucks"]), 4),
            "per_condition": {c: {**b, "accuracy": round(b["correct"] / max(1, b["trucks"]), 4)}
                              for c, b in sorted(per.items())},
            "errors": errors}


def _fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> np.ndarray:
    """Logistic regression by Newton's method with a small ridge (no intercept penalty)."""
    X = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(X.shape[1])
    reg = np.eye(X.shape[1]) * l2
    reg[0, 0] = 0
    for _ in range(50):
        p = 1 / (1 + np.exp(-np.clip(X @ w, -40, 40)))
        grad = X.T @ (p - y) + reg @ w
        hess = X.T @ (X * (p * (1 - p))[:, None]) + reg
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def _calibrate(seeds: list[int], count: int, reader: PlateReader, root: Path) -> None:
    """Fit calibration.WEIGHTS on candidate readings of frame sets of ``seeds``."""
    rows, ys, caps = [], [], []
    for seed in seeds:
        folder = root / f"cal{seed}"
        if not (folder / "labels.csv").exists():
            write_frameset(folder, count, seed)
        for f in load_labels(folder):
            img = _imread(f.path)
            for cand in locate(img, 3):
                ev = reader.evidence(cand)
                if ev is not None:
                    rows.append(features(ev))
                    caps.append(cap(ev))
                    ys.append(float(ev.text == f.plate))
    x, y = np.array(rows), np.array(ys)
    w = _fit_logistic(x, y)
    p = 1 / (1 + np.exp(-(w[0] + x @ w[1:])))
    # The reliability table is of the confidence the reader returns, i.e. after the cap.
    p = np.minimum(p, np.array(caps))
    edges = [0, 0.2, 0.5, 0.8, 0.9, 0.95, 0.99, 1.01]
    bins = []
    for lo, hi in zip(edges, edges[1:], strict=False):
        m = (p >= lo) & (p < hi)
        bins.append({"predicted": [lo, hi], "n": int(m.sum()),
                     "mean_predicted": round(float(p[m].mean()), 3) if m.any() else None,
                     "observed_exact": round(float(y[m].mean()), 3) if m.any() else None})
    print(json.dumps({"seeds": seeds, "candidates": len(y), "exact": int(y.sum()),
                      "features": ("intercept",) + FEATURE_NAMES,
                      "weights": [round(float(v), 4) for v in w], "reliability": bins},
                     indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=632, help="frames incl. 1 in 20 empty lanes")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--baseline-every", type=int, default=10,
                    help="baseline on every Nth frame (it is ~15x slower)")
    ap.add_argument("--dir", type=Path, help="keep the frame set here (default: temp dir)")
    ap.add_argument("--repeat", type=int, default=3, help="timing runs per frame (>= 1)")
    ap.add_argument("--truck-frames", type=int, default=5,
                    help="frames voted per standing truck in the gate figure (0: skip it)")
    ap.add_argument("--gate-every", type=int, default=2,
                    help="gate figure on every Nth plate of the set")
    ap.add_argument("--calibrate", action="store_true",
                    help="fit calibration weights on seeds 7-12, print them and exit")
    args = ap.parse_args()

    cv2.setNumThreads(1)
    reader = PlateReader(threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        if not args.calibrate and not (folder / "labels.csv").exists():
            write_frameset(folder, args.count, args.seed)
        if args.calibrate:
            _calibrate([7, 8, 9, 10, 11, 12], 300, reader, folder)
            return
        frames = load_labels(folder)
        outcomes = []
        reader.read(_imread(frames[0].path))  # warm-up: first ONNX run allocates
        best_of = []
        for f in frames:
            img = _imread(f.path)
            t0 = time.perf_counter()
            readings = reader.read(img)
            outcomes.append(Outcome(f, tuple(readings), time.perf_counter() - t0))
            # The machine is shared: also time each frame again and keep its fastest run,
            # which is what the code costs without other processes' interference.
            runs = [outcomes[-1].seconds]
            for _ in range(args.repeat - 1):
                t0 = time.perf_counter()
                reader.read(img)
                runs.append(time.perf_counter() - t0)
            best_of.append(min(runs) * 1000)
        report = score(outcomes, args.threshold)
        report["latency_ms"] = _pct([o.seconds * 1000 for o in outcomes])
        report[f"latency_ms_best_of_{args.repeat}"] = _pct(best_of)
        report["at_thresholds"] = {
            str(t): {k: score(outcomes, t)[k] for k in ("accuracy", "wrong_confident",
                                                       "no_reading")}
            for t in (0.0, 0.5, 0.8, 0.9, 0.95)}
        if args.truck_frames > 0:
            report["gate_vote"] = _gate_trucks(args.count, args.seed, args.gate_every,
                                               args.truck_frames, reader, args.threshold)
        base = _baseline(frames[:: args.baseline_every])
        sub = {o.frame.path for o in outcomes[:: args.baseline_every]}
        ours_sub = [o.seconds * 1000 for o in outcomes if o.frame.path in sub]
        report["baseline"] = base
        report["ratio"] = {
            "baseline_p50_over_ours_p50": round(base["latency_ms"]["p50"]
                                                / _pct(ours_sub)["p50"], 1)}
        report["command"] = (f"scripts/bench_plates.py --count {args.count} --seed {args.seed}"
                             f" --threshold {args.threshold} --repeat {args.repeat}"
                             f" --truck-frames {args.truck_frames} --gate-every {args.gate_every}")
        print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
