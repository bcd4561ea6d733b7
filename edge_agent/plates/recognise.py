"""Character recognition of a squared-up plate crop with PP-OCR text-line recognisers.

Two ONNX recognisers ship inside registry wheels; nothing is downloaded: PP-OCRv4 (mobile) in
``rapidocr-onnxruntime`` and PP-OCRv6 (small) in ``rapidocr``. We run a recogniser alone (no
text detection) and decode its CTC output ourselves, restricted to characters a plate may
hold and to prefixes the plate grammar allows, so the decoder can only ever produce
grammar-valid text. Per-character probabilities come from a forced alignment of the chosen
text, so a character the model barely saw shows a low probability; ``ctc_log_likelihood``
scores any text under a model, which lets the reader weigh one model's reading by the other.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_agent.plates.grammar import (
    ALNUM,
    DIGITS,
    LETTERS,
    NEW_ENERGY_LETTERS,
    PROVINCES,
    SUFFIXES,
)

__all__ = ["MODELS", "Recogniser", "Recognition", "ModelMissingError", "constrained_decode",
           "ctc_log_likelihood", "forced_char_probs"]

_HEIGHT = 48  # the model's input height
_MIN_LOGP = float(np.log(1e-4))


class ModelMissingError(RuntimeError):
    """The recognition model is not installed."""


@dataclass(frozen=True)
class Recognition:
    text: str
    char_probs: tuple[float, ...]


# Position templates of the plate grammar (see grammar.py); a decoded prefix must fit one.
_P, _L, _A, _D = set(PROVINCES), set(LETTERS), set(ALNUM), set(DIGITS)
_NE, _S = set(NEW_ENERGY_LETTERS), set(SUFFIXES)
_TEMPLATES: tuple[tuple[set[str], ...], ...] = (
    (_P, _L, _A, _A, _A, _A, _A),
    (_P, _L, _A, _A, _A, _A, _S),
    (_P, _L, _NE, _A, _D, _D, _D, _D),
    (_P, _L, _D, _D, _D, _D, _D, _NE),
    # Embassy plates (使 + six digits): decoded so that they can be recognised as special
    # plates (special.py) rather than forced into a civil reading.
    ({"使"}, _D, _D, _D, _D, _D, _D),
)


def _prefix_ok(prefix: str, max_len: int = 8) -> bool:
    return any(len(prefix) <= len(t) <= max_len
               and all(c in t[i] for i, c in enumerate(prefix)) for t in _TEMPLATES)


def _complete(text: str, max_len: int = 8) -> bool:
    return any(len(text) == len(t) <= max_len and all(c in t[i] for i, c in enumerate(text))
               for t in _TEMPLATES)


#: Recognition models by name: (import package, distribution, file inside the package).
#: Both were trained by PaddleOCR on different data with different architectures, so their
#: mistakes differ; that is what makes their agreement informative (see reader.py).
MODELS: dict[str, tuple[str, str, str]] = {
    "ppocr-v4-mobile": ("rapidocr_onnxruntime", "rapidocr-onnxruntime",
                        "models/ch_PP-OCRv4_rec_infer.onnx"),
    "ppocr-v6-small": ("rapidocr", "rapidocr", "models/PP-OCRv6_rec_small.onnx"),
}


def _model_path(name: str) -> Path:
    if name not in MODELS:
        raise ValueError(f"unknown recognition model {name!r}; choose one of "
                         f"{', '.join(MODELS)}")
    return packaged_model(name, *MODELS[name])


def packaged_model(name: str, package: str, dist: str, rel: str) -> Path:
    """The path of model file ``rel`` shipped inside the installed ``package``."""
    # find_spec locates the package without importing it (rapidocr's import is slow and
    # reads its own config); we only need the model file it ships.
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelMissingError(
            f"{dist} is not installed; run scripts/setup (it ships the {name} "
            "model coalgate uses)")
    path = Path(spec.origin).parent / rel
    if not path.exists():
        raise ModelMissingError(f"model {name} missing at {path}; reinstall {dist}")
    return path


class Recogniser:
    """A PP-OCR text-line recogniser restricted to plate characters."""

    def __init__(self, model: str = "ppocr-v4-mobile", threads: int = 1) -> None:
        import onnxruntime as ort

        self.model = model
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(_model_path(model)), sess_options=opts,
                                             providers=["CPUExecutionProvider"])
        chars = self._session.get_modelmeta().custom_metadata_map["character"].splitlines()
        # Index 0 is the CTC blank; the model's last class is a space.
        self._chars = ["<blank>", *chars, " "]
        plate_chars = PROVINCES + ALNUM + SUFFIXES
        index = {c: i for i, c in enumerate(self._chars)}
        self._allowed = np.array([index[c] for c in plate_chars], np.int64)
        self._allowed_chars = plate_chars
        # Plates never use I or O, so what the model calls O is a 0 and I is a 1.
        self._lookalikes = [(index[d], [index[c] for c in src if c in index])
                            for d, src in (("0", "Oo"), ("1", "Il|"))]
        self._input = self._session.get_inputs()[0].name

    def probs(self, line: np.ndarray) -> np.ndarray:
        """Per-timestep probabilities over [blank, *plate characters] for a BGR text line."""
        h, w = line.shape[:2]
        new_w = max(16, int(math.ceil(_HEIGHT * w / h)))
        img = cv2.resize(line, (new_w, _HEIGHT)).astype(np.float32)
        img = (img.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
        pad_w = new_w + _HEIGHT // 2  # a margin of blanks right of the text helps CTC settle
        batch = np.zeros((1, 3, _HEIGHT, pad_w), np.float32)
        batch[0, :, :, :new_w] = img
        out = self._session.run(None, {self._input: batch})[0][0]
        for dst, srcs in self._lookalikes:
            out[:, dst] += out[:, srcs].sum(axis=1)
        return np.concatenate([out[:, :1], out[:, self._allowed]], axis=1)

    @property
    def alphabet(self) -> str:
        """The characters of :meth:`probs` columns 1.. (column 0 is the CTC blank)."""
        return self._allowed_chars

    def recognise(self, line: np.ndarray) -> Recognition | None:
        probs = self.probs(line)
        return constrained_decode(probs, self._allowed_chars)


def constrained_decode(probs: np.ndarray, alphabet: str, beam: int = 8,
                       topk: int = 4, max_len: int = 8) -> Recognition | None:
    """CTC prefix beam search that only extends grammar-valid prefixes.

    ``max_len`` 7 leaves out the 8-character new-energy plates (for a plate whose colour
    is not green: a border or a screw next to a blue plate otherwise reads as an 8th
    character).

    ``probs`` is T x (1 + len(alphabet)) with the blank first. Returns the most probable
    complete plate, or None when no grammar-valid plate is reachable.
    """
    logp = np.log(np.maximum(probs, 1e-12))
    beams: dict[str, tuple[float, float]] = {"": (0.0, -np.inf)}  # prefix -> (blank, char)
    for t in range(logp.shape[0]):
        row = logp[t]
        # Characters below 1e-4 cannot change the result; on blank-dominated steps
        # (most of them) no character is left to try and only blanks/repeats extend.
        top = np.argsort(row[1:])[-topk:] + 1
        cands = top[row[top] > _MIN_LOGP]
        nxt: dict[str, list[float]] = {}

        def add(prefix: str, which: int, value: float, store: dict[str, list[float]] = nxt
                ) -> None:
            cur = store.setdefault(prefix, [-np.inf, -np.inf])
            cur[which] = np.logaddexp(cur[which], value)

        for prefix, (pb, pnb) in beams.items():
            total = np.logaddexp(pb, pnb)
            add(prefix, 0, total + row[0])
            if prefix:
                last = alphabet.index(prefix[-1]) + 1
                add(prefix, 1, pnb + row[last])
            for k in cands:
                ch = alphabet[k - 1]
                ext = prefix + ch
                if not _prefix_ok(ext, max_len):
                    continue
                if prefix and ch == prefix[-1]:
                    add(ext, 1, pb + row[k])
                else:
                    add(ext, 1, total + row[k])
        ranked = sorted(nxt.items(), key=lambda kv: -np.logaddexp(kv[1][0], kv[1][1]))[:beam]
        beams = {k: (v[0], v[1]) for k, v in ranked}
    complete = [(float(np.logaddexp(*v)), k) for k, v in beams.items() if _complete(k, max_len)]
    if not complete:
        return None
    text = max(complete)[1]
    return Recognition(text=text, char_probs=forced_char_probs(probs, text, alphabet))


def ctc_log_likelihood(probs: np.ndarray, text: str, alphabet: str) -> float:
    """log P(text | probs) summed over every CTC alignment (the forward algorithm)."""
    labels = [alphabet.index(c) + 1 for c in text]
    ext = np.zeros(2 * len(labels) + 1, np.int64)
    ext[1::2] = labels
    logp = np.log(np.maximum(probs, 1e-12))[:, ext]  # T x S, the states' emissions
    S = len(ext)
    # A state may skip the blank before it when its label differs from the one two back.
    skip = np.zeros(S, bool)
    skip[3::2] = ext[3::2] != ext[1:-2:2]
    alpha = np.full(S, -np.inf)
    alpha[0] = logp[0, 0]
    if S > 1:
        alpha[1] = logp[0, 1]
    for t in range(1, logp.shape[0]):
        prev = alpha
        alpha = prev.copy()
        alpha[1:] = np.logaddexp(alpha[1:], prev[:-1])
        alpha[2:] = np.where(skip[2:], np.logaddexp(alpha[2:], prev[:-2]), alpha[2:])
        alpha = alpha + logp[t]
    return float(np.logaddexp(alpha[-1], alpha[-2])) if S > 1 else float(alpha[-1])


def forced_char_probs(probs: np.ndarray, text: str, alphabet: str) -> tuple[float, ...]:
    """Each character's highest probability along the best CTC alignment of ``text``."""
    labels = [alphabet.index(c) + 1 for c in text]
    ext = [0]
    for lab in labels:
        ext += [lab, 0]
    T, S = probs.shape[0], len(ext)
    logp = np.log(np.maximum(probs, 1e-12))
    dp = np.full((T, S), -np.inf)
    back = np.zeros((T, S), np.int64)
    dp[0, 0] = logp[0, ext[0]]
    if S > 1:
        dp[0, 1] = logp[0, ext[1]]
    for t in range(1, T):
        for s in range(S):
            best, arg = dp[t - 1, s], s
            if s >= 1 and dp[t - 1, s - 1] > best:
                best, arg = dp[t - 1, s - 1], s - 1
            if s >= 2 and ext[s] != 0 and ext[s] != ext[s - 2] and dp[t - 1, s - 2] > best:
                best, arg = dp[t - 1, s - 2], s - 2
            dp[t, s] = best + logp[t, ext[s]]
            back[t, s] = arg
    s = S - 1 if dp[T - 1, S - 1] >= dp[T - 1, S - 2] else S - 2
    char_p = [0.0] * len(labels)
    for t in range(T - 1, -1, -1):
        if ext[s] != 0:
            i = (s - 1) // 2
            char_p[i] = max(char_p[i], float(probs[t, ext[s]]))
        s = int(back[t, s])
    return tuple(char_p)
