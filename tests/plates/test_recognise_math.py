"""The CTC arithmetic the reader relies on, against brute force (no model, no I/O)."""

import itertools

import numpy as np
import pytest

from edge_agent.plates.calibration import DISAGREE_CAP, Evidence, calibrate, cap
from edge_agent.plates.recognise import (
    MODELS,
    ModelMissingError,
    Recogniser,
    _model_path,
    constrained_decode,
    ctc_log_likelihood,
)

ALPHABET = "陕K12"


def _collapse(path: tuple[int, ...]) -> str:
    out, prev = [], 0
    for k in path:
        if k != 0 and k != prev:
            out.append(ALPHABET[k - 1])
        prev = k
    return "".join(out)


@pytest.mark.parametrize("text", ["陕", "K1", "11", "陕K1", "121"])
@pytest.mark.parametrize("seed", range(3))
def test_log_likelihood_sums_every_alignment(text: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    T = 6
    probs = rng.random((T, len(ALPHABET) + 1))
    probs /= probs.sum(axis=1, keepdims=True)
    brute = sum(float(np.prod(probs[np.arange(T), path]))
                for path in itertools.product(range(len(ALPHABET) + 1), repeat=T)
                if _collapse(path) == text)
    assert ctc_log_likelihood(probs, text, ALPHABET) == pytest.approx(np.log(brute), rel=1e-9)


def test_a_text_too_long_for_the_frames_has_no_likelihood() -> None:
    probs = np.full((2, len(ALPHABET) + 1), 1 / (len(ALPHABET) + 1))
    assert ctc_log_likelihood(probs, "111", ALPHABET) < -1e3  # "1 blank 1 blank 1" needs 5


def test_decoder_only_completes_grammar_valid_plates() -> None:
    from edge_agent.plates.grammar import ALNUM, PROVINCES, SUFFIXES
    alphabet = PROVINCES + ALNUM + SUFFIXES
    T = 20
    probs = np.full((T, len(alphabet) + 1), 1e-6)
    probs[:, 0] = 1.0
    # Spikes spelling "陕K1234" (six characters: one short of a plate).
    for t, ch in zip(range(1, 13, 2), "陕K1234", strict=True):
        probs[t] = 1e-6
        probs[t, alphabet.index(ch) + 1] = 1.0
    probs /= probs.sum(axis=1, keepdims=True)
    assert constrained_decode(probs, alphabet) is None


def test_disputed_readings_never_reach_a_gate_threshold() -> None:
    sure = (0.999,) * 7
    agreed = Evidence(text="陕K12345", char_probs=sure, agree=True)
    disputed = Evidence(text="陕K12345", char_probs=sure, agree=False, rival=True)
    assert calibrate(agreed) >= 0.9
    assert calibrate(disputed) <= DISAGREE_CAP < 0.9
    assert cap(disputed) == DISAGREE_CAP


def test_unknown_model_name_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="ppocr-v4-mobile"):
        Recogniser("ppocr-v9")


def test_every_named_model_ships_in_an_installed_wheel() -> None:
    for name in MODELS:
        try:
            path = _model_path(name)
        except ModelMissingError as exc:  # pragma: no cover - a broken install
            pytest.fail(str(exc))
        assert path.stat().st_size > 1_000_000
