from pathlib import Path

import numpy as np
import pytest

from edge_agent.plates import PlateReading, vote
from edge_agent.plates.calibration import (
    CAP_EXPONENT,
    FEATURE_NAMES,
    WEIGHTS,
    Evidence,
    calibrate,
)
from edge_agent.plates.evaluate import LabelError, LabelledFrame, Outcome, load_labels, score


def r(text: str, conf: float) -> PlateReading:
    return PlateReading(text=text, color="blue", bbox=(0, 0, 10, 3), confidence=conf)


def test_vote_agreeing_frames_pass() -> None:
    got = vote([[r("陕K12345", 0.95)], [r("陕K12345", 0.97)], [r("陕K12345", 0.93)]], 0.9)
    assert got is not None and got.text == "陕K12345"
    assert got.confidence == pytest.approx(0.95)  # two of three reach 0.95


def test_vote_one_poor_frame_of_five_does_not_hold_a_well_read_plate() -> None:
    frames = [[r("陕K12345", 0.97)], [r("陕K12345", 0.5)], [r("陕K12345", 0.96)], [],
              [r("陕K12345", 0.95)]]
    got = vote(frames, 0.9)
    assert got is not None and got.confidence == pytest.approx(0.95)


def test_vote_a_plate_read_by_a_minority_of_frames_cannot_pass() -> None:
    frames = [[r("陕K12345", 0.99)], [r("陕K12345", 0.99)], [], [], [r("陕K12845", 0.5)]]
    got = vote(frames, 0.0)
    assert got is not None and got.text == "陕K12345" and got.confidence == 0.0
    assert vote(frames, 0.1) is None


def test_vote_missing_and_disagreeing_frames_pull_confidence_down() -> None:
    frames = [[r("陕K12345", 0.95)], [], [r("陕K12845", 0.9)], [r("陕K12345", 0.96)]]
    assert vote(frames, 0.9) is None
    got = vote(frames, 0.0)
    assert got is not None and got.text == "陕K12345"
    assert got.confidence == 0.0  # two of four frames are not a strict majority


def test_vote_uses_each_frames_best_reading_and_handles_nothing() -> None:
    assert vote([], 0.1) is None
    assert vote([[], []], 0.0) is None
    got = vote([[r("晋A11111", 0.2), r("晋A22222", 0.9)]], 0.5)
    assert got is not None and got.text == "晋A22222"


def test_reading_rejects_confidence_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match="outside 0..1"):
        r("陕K12345", 1.2)


def ev(probs: tuple[float, ...]) -> Evidence:
    return Evidence(text="陕K12345", char_probs=probs)


def test_confidence_is_bounded_and_rises_with_evidence() -> None:
    values = [calibrate(ev((p,) * 7)) for p in np.linspace(0.005, 0.999, 25)]
    assert values == sorted(values)
    assert 0.0 <= min(values) and max(values) <= 1.0
    assert min(values) < 0.05 and max(values) > 0.99


def test_weak_characters_cap_confidence_whatever_the_others_say() -> None:
    # Outside the fitted data the logistic model alone would be optimistic.
    assert calibrate(ev((0.3,) * 7)) <= 0.3 ** CAP_EXPONENT + 1e-9
    # A serial character the models barely saw keeps the reading below the gate's 0.9
    # threshold, however sure the others are (CAP_EXPONENT 0.3: below 0.70 never passes).
    assert calibrate(ev((1.0,) * 3 + (0.6,) + (1.0,) * 3)) < 0.9
    # The province has a looser floor (faint but right on small real crops), yet one the
    # models hardly saw at all cannot pass.
    assert calibrate(ev((0.004,) + (1.0,) * 6)) < 0.9
    # Look-alike characters (0/D/Q, 6/G, ...) are held to a stricter cap.
    sure_d = Evidence(text="陕K1234D", char_probs=(1.0,) * 6 + (0.9,))
    sure_h = Evidence(text="陕K1234H", char_probs=(1.0,) * 6 + (0.9,))
    assert calibrate(sure_d) < 0.9 <= calibrate(sure_h)


def test_a_doubtful_character_or_a_close_rival_lowers_confidence() -> None:
    sure = calibrate(ev((0.99,) * 7))
    assert calibrate(ev((0.4,) + (0.99,) * 6)) < sure  # province barely seen
    assert calibrate(ev((0.99,) * 6 + (0.3,))) < sure
    disputed = Evidence(text="陕K12345", char_probs=(0.99,) * 7, agree=False,
                          rival=True)
    assert calibrate(disputed) < sure  # the two recognisers read different texts
    assert len(WEIGHTS) == len(FEATURE_NAMES) + 1


def test_score_counts_confident_wrong_apart_from_no_reading() -> None:
    def o(truth: str | None, cond: str, *readings: PlateReading) -> Outcome:
        return Outcome(LabelledFrame(Path(f"{truth}.jpg"), truth, cond), readings, 0.01)

    rep = score([
        o("陕K12345", "clean", r("陕K12345", 0.99)),
        o("陕K12346", "clean", r("陕K12348", 0.95)),  # confident wrong
        o("陕K12347", "blur", r("陕K12341", 0.5)),  # below threshold: no reading
        o("陕K12349", "blur"),
        o(None, "clean", r("晋A11111", 0.97)),  # a plate read in an empty lane
    ], threshold=0.9)
    assert rep["plate_frames"] == 4
    assert rep["accuracy"] == 0.25
    assert rep["wrong_confident"] == 1 and rep["no_reading"] == 2
    assert rep["per_condition"]["blur"]["no_reading"] == 2
    assert rep["per_condition"]["empty_lane"]["false_plate"] == 1
    assert {e["truth"] for e in rep["errors"]} == {"陕K12346", "陕K12347", "陕K12349", None}


def test_labels_from_file_names(tmp_path: Path) -> None:
    for name in ("0001_陕K12345.jpg", "0002_none.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    frames = load_labels(tmp_path)
    assert [(f.path.name, f.plate) for f in frames] == [
        ("0001_陕K12345.jpg", "陕K12345"), ("0002_none.jpg", None)]
    (tmp_path / "0003_hello.jpg").write_bytes(b"x")
    with pytest.raises(LabelError, match="0003_hello.jpg"):
        load_labels(tmp_path)
