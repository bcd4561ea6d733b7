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
import pickle
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_agent.plates import PlateReader, PlateReading, vote
from edge_agent.plates.calibration import FEATURE_NAMES, Evidence, calibrate, features
from edge_agent.plates.evaluate import (
    LabelledFrame,
    Outcome,
    load_labels,
    load_scene_labels,
    score,
)
from edge_agent.plates.grammar import normalise_plate
from edge_agent.plates.locate import locate
from edge_agent.plates.reader import crop_candidate
from firmware_sim.camera.frameset import frame_specs, write_frameset
from firmware_sim.camera.render import (
    CONDITION_TAGS,
    KINDS,
    SPECIAL_KINDS,
    random_conditions,
    random_plate,
    render_frame,
    render_scene,
)

#: Real development photos (issue 11), relative to the repository root.
REAL = Path(__file__).resolve().parent.parent.parent / "shared" / "plates-dev"


def _imread(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"cannot read {path}")
    return np.asarray(img)


def _pct(ms: list[float]) -> dict[str, float]:
    a = np.array(ms)
    return {"p50": round(float(np.percentile(a, 50)), 1),
            "p99": round(float(np.percentile(a, 99)), 1)}


def _baseline(frames: list[Any], reader_imread: bool = False) -> dict[str, Any]:
    from rapidocr_onnxruntime import RapidOCR

    ocr = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)
    ms, correct, wrong = [], 0, 0
    for f in frames:
        img = _imread_any(f.path) if reader_imread else _imread(f.path)
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


def _real_crop_files() -> list[Path]:
    root = REAL / "crops"
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    if not files:
        raise SystemExit(f"no real crops in {root}: the development data set is missing")
    return files


def _imread_any(path: Path) -> np.ndarray:
    # cv2.imread cannot open non-ASCII paths on every platform; decode the bytes instead.
    img = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"cannot read {path}")
    return np.asarray(img)


def _fold(name: str) -> int:
    """Two fixed halves of the real crops for cross-validation (by file name)."""
    return zlib.crc32(name.encode()) % 2


def _collect(seeds: list[int], count: int, reader: PlateReader, root: Path
             ) -> list[tuple[str, int, Evidence, bool]]:
    """(source, fold, evidence, exact) for simulator candidates and the real crops."""
    rows: list[tuple[str, int, Evidence, bool]] = []
    for seed in seeds:
        folder = root / f"cal{seed}"
        if not (folder / "labels.csv").exists():
            write_frameset(folder, count, seed)
        for f in load_labels(folder):
            img = _imread(f.path)
            for cand in locate(img, 3):
                ev = reader.evidence(cand)
                if ev is not None:
                    rows.append(("sim", -1, ev, ev.text == f.plate))
    for path in _real_crop_files():
        ev = reader.evidence(crop_candidate(_imread_any(path)))
        if ev is not None:
            rows.append(("real", _fold(path.name), ev, ev.text == path.stem))
    return rows


def _fit(rows: list[tuple[str, int, Evidence, bool]]
         ) -> tuple[tuple[float, ...], float, float]:
    """Weights, and the cap exponents (general, look-alike characters) that keep
    confident-wrong at 0 on the real ``rows`` (at most 1 in 1,000 simulator candidates)
    while passing the most exact readings at 0.9."""
    x = np.array([features(r[2]) for r in rows])
    y = np.array([float(r[3]) for r in rows])
    w = tuple(float(v) for v in _fit_logistic(x, y))
    best: tuple[int, float, float] = (-1, CAP_CHOICES[-1], CONFUSABLE_CHOICES[-1])
    for e in CAP_CHOICES:
        for k in CONFUSABLE_CHOICES:
            conf = [calibrate(ev, w, e, k) for _, _, ev, _ in rows]
            wrong = [r[0] for c, r in zip(conf, rows, strict=True) if c >= 0.9 and not r[3]]
            # None on real crops; on simulator candidates at most 1 in 1,000 (a province
            # both models misread the same way under blur, which no cap separates from the
            # real crops' correctly read but faint province characters; see docs/plates.md).
            n_sim = sum(1 for r in rows if r[0] == "sim")
            if "real" in wrong or wrong.count("sim") > n_sim / 1000:
                continue
            passed = sum(1 for c, r in zip(conf, rows, strict=True) if c >= 0.9 and r[3])
            if passed > best[0]:
                best = (passed, e, k)
    return w, best[1], best[2]


#: Cap exponents tried by the calibration (see calibration.CAP_EXPONENT and
#: CONFUSABLE_EXPONENT).
CAP_CHOICES = (0.05, 0.1, 0.2, 0.3, 0.5)
CONFUSABLE_CHOICES = (0.5, 1.0, 1.5, 2.0, 3.0)


def _measure(rows: list[tuple[str, int, Evidence, bool]], w: tuple[float, ...],
             e: float, k: float) -> dict[str, Any]:
    n = len(rows)
    conf = [calibrate(ev, w, e, k) for _, _, ev, _ in rows]
    return {"readings": n, "exact": sum(ok for *_, ok in rows),
            "exact_at_0.9": sum(1 for c, r in zip(conf, rows, strict=True) if c >= 0.9 and r[3]),
            "wrong_at_0.9": sum(1 for c, r in zip(conf, rows, strict=True)
                                if c >= 0.9 and not r[3])}


def _calibrate(seeds: list[int], count: int, reader: PlateReader, root: Path,
               reuse: bool = False) -> None:
    """Fit calibration.WEIGHTS on simulator candidates (seeds) and the 1,000 real crops,
    with two-fold cross-validation over the real crops (fit on one half plus the simulator,
    measure on the other half), then the final fit on everything."""
    cache = root / "calibration-evidence.pkl"
    if reuse and cache.exists():
        # Evidence does not depend on the features or weights being fitted; reusing it
        # lets feature choices be compared quickly (--reuse-evidence).
        rows = pickle.loads(cache.read_bytes())
    else:
        rows = _collect(seeds, count, reader, root)
        cache.write_bytes(pickle.dumps(rows))
    sim = [r for r in rows if r[0] == "sim"]
    folds = {}
    for k in (0, 1):
        train = sim + [r for r in rows if r[0] == "real" and r[1] != k]
        test = [r for r in rows if r[0] == "real" and r[1] == k]
        w, e, c = _fit(train)
        folds[f"fit_sim+real{1 - k}_measure_real{k}"] = {
            "weights": [round(v, 4) for v in w], "cap_exponent": e, "confusable_exponent": c,
            "fit": _measure(train, w, e, c), "held_out": _measure(test, w, e, c)}
    w, e, c = _fit(rows)
    conf = np.array([calibrate(ev, w, e, c) for _, _, ev, _ in rows])
    y = np.array([float(r[3]) for r in rows])
    edges = [0, 0.2, 0.5, 0.8, 0.9, 0.95, 0.99, 1.01]
    bins = []
    for lo, hi in zip(edges, edges[1:], strict=False):
        m = (conf >= lo) & (conf < hi)
        bins.append({"predicted": [lo, hi], "n": int(m.sum()),
                     "mean_predicted": round(float(conf[m].mean()), 3) if m.any() else None,
                     "observed_exact": round(float(y[m].mean()), 3) if m.any() else None})
    print(json.dumps({"seeds": seeds, "candidates": len(rows),
                      "sim": _measure(sim, w, e, c),
                      "real": _measure([r for r in rows if r[0] == "real"], w, e, c),
                      "cross_validation": folds,
                      "features": ("intercept",) + FEATURE_NAMES,
                      "weights": [round(v, 4) for v in w], "cap_exponent": e,
                      "confusable_exponent": c,
                      "reliability": bins}, indent=2))


def _timed(fn: Any, repeat: int) -> tuple[Any, float, float]:
    """fn()'s result, its first run's ms and the fastest of ``repeat`` runs' ms."""
    t0 = time.perf_counter()
    out = fn()
    first = (time.perf_counter() - t0) * 1000
    best = first
    for _ in range(repeat - 1):
        t0 = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - t0) * 1000)
    return out, first, best


def _real(reader: PlateReader, threshold: float, repeat: int,
          labels: Path) -> dict[str, Any]:
    """Real development data: the 1,000 crops and the labelled CCPD scenes, with the
    naive full-frame OCR baseline on the scenes in the same run."""
    crops: dict[str, Any] = {"crops": 0, "exact_top": 0, "exact_at_threshold": 0,
                             "wrong_confident": 0, "no_reading": 0}
    ms, best = [], []
    for path in _real_crop_files():
        img = _imread_any(path)
        r, first, fast = _timed(lambda img=img: reader.read_crop(img), repeat)
        ms.append(first)
        best.append(fast)
        crops["crops"] += 1
        if r is None:
            crops["no_reading"] += 1
        elif r.text == path.stem:
            crops["exact_top"] += 1
            crops["exact_at_threshold"] += r.confidence >= threshold
        else:
            crops["wrong_confident"] += r.confidence >= threshold
    n = crops["crops"]
    crops["exact_top_share"] = round(crops["exact_top"] / n, 4)
    crops["exact_at_threshold_share"] = round(crops["exact_at_threshold"] / n, 4)
    crops["latency_ms_per_crop"] = _pct(ms)
    crops[f"latency_ms_per_crop_best_of_{repeat}"] = _pct(best)

    frames = load_scene_labels(labels, REAL / "scenes")
    outcomes, best = [], []
    for f in frames:
        img = _imread_any(f.path)
        readings, first, fast = _timed(lambda img=img: reader.read(img), repeat)
        outcomes.append(Outcome(f, tuple(readings), first / 1000))
        best.append(fast)
    scenes = score(outcomes, threshold)
    certain = [o for o in outcomes if o.frame.plate and o.frame.condition != "uncertain"]
    scenes["certain_standard_plates"] = len(certain)
    scenes["certain_exact_top"] = sum(1 for o in certain
                                      if o.readings and o.readings[0].text == o.frame.plate)
    scenes["certain_exact_at_threshold"] = sum(
        1 for o in certain if o.readings and o.readings[0].text == o.frame.plate
        and o.readings[0].confidence >= threshold)
    scenes["no_plate_scenes_with_a_reading"] = sum(
        1 for o in outcomes if not o.frame.plate and o.readings)
    scenes["latency_ms"] = _pct([o.seconds * 1000 for o in outcomes])
    scenes[f"latency_ms_best_of_{repeat}"] = _pct(best)
    scenes["frame_size"] = "720x1160 (CCPD)"
    base = _baseline([f for f in frames if f.condition != "uncertain"], reader_imread=True)
    return {"crops": crops, "scenes": scenes, "scenes_baseline": base}


def _wild(readers: dict[str, PlateReader], count: int, threshold: float) -> dict[str, Any]:
    """Simulated frames of what broke the reader on real photos (render.py tag "wild":
    plates 60-400 px anywhere, glare, timestamp overlay, clutter, dirt), per reader."""
    rng = np.random.default_rng(31337)
    frames = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        text = random_plate(rng, kind)
        frames.append(render_frame(text, kind=kind, conditions=random_conditions(rng, "wild"),
                                   seed=900_000 + i))
    out: dict[str, Any] = {"frames": count}
    for name, reader in readers.items():
        outcomes: list[Outcome] = []
        for frame, label in frames:
            t0 = time.perf_counter()
            readings = reader.read(frame)
            lf = LabelledFrame(Path(f"wild{len(outcomes)}"), label.plate, "wild")
            outcomes.append(Outcome(lf, tuple(readings), time.perf_counter() - t0))
        rep = score(outcomes, threshold)
        out[name] = {k: rep[k] for k in ("accuracy", "wrong_confident", "no_reading")}
        out[name]["exact_top"] = sum(1 for o in outcomes
                                     if o.readings and o.readings[0].text == o.frame.plate)
        out[name]["latency_ms"] = _pct([o.seconds * 1000 for o in outcomes])
    return out


def _special(reader: PlateReader, count: int, threshold: float) -> dict[str, Any]:
    """Simulated special plates: none may come back as a confident civil reading."""
    rng = np.random.default_rng(2024)
    out: dict[str, Any] = {"frames": 0, "read_as_special": 0, "unreadable_special": 0,
                           "nothing": 0, "confident_civil": 0, "per_kind": {}}
    for i in range(count):
        kind = SPECIAL_KINDS[i % len(SPECIAL_KINDS)]
        text = random_plate(rng, kind)
        tag = CONDITION_TAGS[(i // len(SPECIAL_KINDS)) % len(CONDITION_TAGS)]
        frame, _ = render_frame(text, kind=kind, conditions=random_conditions(rng, tag),
                                seed=777_000 + i)
        res = reader.inspect(frame)
        out["frames"] += 1
        k = out["per_kind"].setdefault(kind, {"frames": 0, "special": 0})
        k["frames"] += 1
        if any(r.special is None and r.confidence >= threshold for r in res.readings):
            out["confident_civil"] += 1
        if any(r.special for r in res.readings):
            out["read_as_special"] += 1
            k["special"] += 1
        elif res.special:
            out["unreadable_special"] += 1
            k["special"] += 1
        else:
            out["nothing"] += 1
    return out


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
    ap.add_argument("--labels", type=Path,
                    default=Path(__file__).resolve().parent.parent / "tests" / "plates"
                    / "real_scenes.toml", help="labels of the real scenes")
    ap.add_argument("--special", type=int, default=60,
                    help="simulated special plates (police, HK/Macau, embassy, WJ, coach)")
    ap.add_argument("--wild", type=int, default=120,
                    help="simulated 'wild' frames (sizes, glare, overlays), both localisers")
    ap.add_argument("--only-real", action="store_true",
                    help="real data and special plates only (skip the simulated set)")
    ap.add_argument("--reuse-evidence", action="store_true",
                    help="with --calibrate: reuse the evidence collected by the last run")
    ap.add_argument("--calibrate", action="store_true",
                    help="fit calibration weights on seeds 7-12, print them and exit")
    args = ap.parse_args()

    cv2.setNumThreads(1)
    reader = PlateReader(threads=1)
    if args.only_real:
        reader.read(np.zeros((720, 1280, 3), np.uint8))  # warm-up
        colour_only = PlateReader(threads=1, detector=None, min_plate_width=90)
        print(json.dumps({"real": _real(reader, args.threshold, args.repeat, args.labels),
                          "special": _special(reader, args.special, args.threshold),
                          "wild": _wild({"reader": reader, "colour_cue_only_before_issue_11":
                                         colour_only}, args.wild, args.threshold)},
                         ensure_ascii=False, indent=2))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        if not args.calibrate and not (folder / "labels.csv").exists():
            write_frameset(folder, args.count, args.seed)
        if args.calibrate:
            _calibrate([7, 8, 9, 10, 11, 12], 300, reader, folder, args.reuse_evidence)
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
        report["real"] = _real(reader, args.threshold, args.repeat, args.labels)
        report["special"] = _special(reader, args.special, args.threshold)
        report["wild"] = _wild({"reader": reader, "colour_cue_only_before_issue_11":
                                PlateReader(threads=1, detector=None, min_plate_width=90)},
                               args.wild, args.threshold)
        report["command"] = (f"scripts/bench_plates.py --count {args.count} --seed {args.seed}"
                             f" --threshold {args.threshold} --repeat {args.repeat}"
                             f" --truck-frames {args.truck_frames} --gate-every {args.gate_every}")
        print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
