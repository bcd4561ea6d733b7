"""QR round trip: render the ticket, photograph a phone screen showing it (simulated with
OpenCV: perspective, rotation, blur, noise, moiré, brightness, JPEG), decode with zxing-cpp."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import pytest

from edge_agent.tickets import GateTicketVerifier, decode_frame, ticket_texts_in_frame
from ledger.ticket_qr import render_qr
from tests.tickets.conftest import SITE, T0


def phone_photo(code_png: bytes, *, seed: int, angle: float, tilt: float, blur: float,
                noise: float, moire: float, brightness: float, gamma: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    code = imdecode(code_png, cv2.IMREAD_GRAYSCALE)
    # The phone screen: the code on a slightly grey backlit panel with a dark bezel.
    screen = np.full((code.shape[0] + 120, code.shape[1] + 60), 235, np.uint8)
    screen[60:60 + code.shape[0], 30:30 + code.shape[1]] = np.where(code < 128, 35, 235)
    # Screen pixel grid beating against the camera sensor: moiré stripes.
    yy, xx = np.mgrid[0:screen.shape[0], 0:screen.shape[1]]
    stripes = moire * np.sin(2 * math.pi * (xx * 0.37 + yy * 0.11))
    screen = np.clip(screen + stripes, 0, 255).astype(np.uint8)
    canvas = np.full((900, 900), 20, np.uint8)  # dark surroundings
    h, w = screen.shape
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    cx, cy, s = 450, 450, 620 / max(h, w)
    corners = []
    for x, y in src:
        px, py = (x - w / 2) * s, (y - h / 2) * s
        px *= 1 - tilt * (py / (h * s))  # keystone: the top of the phone further away
        r = math.radians(angle)
        corners.append([cx + px * math.cos(r) - py * math.sin(r),
                        cy + px * math.sin(r) + py * math.cos(r)])
    dst = np.array(corners, dtype=np.float32) + rng.normal(0, 6, (4, 2)).astype(np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    photo = cv2.warpPerspective(screen, matrix, (900, 900), dst=canvas,
                                borderMode=cv2.BORDER_TRANSPARENT, flags=cv2.INTER_LINEAR)
    photo = cv2.GaussianBlur(photo, (0, 0), blur)
    photo = photo.astype(np.float32) / 255.0
    photo = np.power(photo, gamma) * brightness * 255.0
    gradient = np.linspace(0.85, 1.1, photo.shape[1])[None, :]  # uneven lighting
    photo = photo * gradient + rng.normal(0, noise, photo.shape)
    photo = np.clip(photo, 0, 255).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(photo, cv2.COLOR_GRAY2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 70])
    assert ok
    return imdecode(jpeg.tobytes(), cv2.IMREAD_COLOR)


def imdecode(data: bytes, flags: int) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    assert image is not None
    return np.asarray(image)


CASES: list[dict[str, Any]] = [
    dict(seed=1, angle=12, tilt=0.15, blur=1.2, noise=6, moire=18, brightness=1.0, gamma=1.0),
    dict(seed=2, angle=-33, tilt=0.25, blur=1.6, noise=9, moire=25, brightness=0.7, gamma=1.4),
    dict(seed=3, angle=97, tilt=0.1, blur=1.0, noise=12, moire=10, brightness=1.2, gamma=0.7),
    dict(seed=4, angle=185, tilt=0.3, blur=1.4, noise=8, moire=30, brightness=0.9, gamma=1.1),
]


@pytest.mark.parametrize("case", CASES, ids=[f"seed{c['seed']}" for c in CASES])
def test_phone_screen_photo_decodes(ticket_text: str, case: dict) -> None:
    photo = phone_photo(render_qr(ticket_text, "png", scale=4), **case)
    # the photo really is degraded: not the clean rendering, not axis-aligned
    assert photo.shape == (900, 900, 3)
    assert ticket_texts_in_frame(photo) == [ticket_text]


def test_photo_to_gate_verdict(tmp_path, ticket_text: str, trust, root_key) -> None:
    photo = phone_photo(render_qr(ticket_text, "png", scale=4), **CASES[1])
    gate = GateTicketVerifier(SITE, tmp_path / "t.db", trust_roots=[root_key.verifier])
    gate.apply_delta({"type": "trust", "note": trust.sign([root_key])}, now=T0)
    (text,) = ticket_texts_in_frame(photo)
    assert gate.check(text, plate="陕K8A3B2", now=T0).ok
    gate.close()


def test_blank_frame_and_foreign_codes(ticket_text: str) -> None:
    assert decode_frame(np.full((300, 300), 128, np.uint8)) == []
    other = imdecode(render_qr("HTTPS://EXAMPLE.COM", "png", scale=6), cv2.IMREAD_GRAYSCALE)
    assert decode_frame(other) == ["HTTPS://EXAMPLE.COM"]
    assert ticket_texts_in_frame(other) == []
