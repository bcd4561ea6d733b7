"""Pure rendering of gate-camera frames: a truck front with a Chinese licence plate.

Everything here is a function of its arguments and a seed: no clock, no I/O beyond reading
two Debian fonts once. The plate is drawn to GA 36-2018 proportions at 2 px/mm, mounted on
the truck's bumper, and the truck front is turned about a vertical axis (the camera looks at
the lane from the side at up to 25°). The label carries the truth for recognition benchmarks.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from edge_agent.plates.grammar import ALNUM, DIGITS, LETTERS, is_new_energy

__all__ = [
    "FRAME_W",
    "FRAME_H",
    "KINDS",
    "SPECIAL_KINDS",
    "EXTRA_TAGS",
    "CONDITION_TAGS",
    "Conditions",
    "FrameLabel",
    "FontMissingError",
    "render_plate",
    "render_frame",
    "render_scene",
    "Scene",
    "random_plate",
    "random_conditions",
    "kind_for",
]

FRAME_W, FRAME_H = 1280, 720
PlateKind = Literal["blue", "yellow", "green", "yellow_double", "police", "hk_macau",
                    "embassy", "armed_police", "coach"]
KINDS: tuple[PlateKind, ...] = ("blue", "yellow", "green", "yellow_double")
#: Special plates (issue 11), rendered so the reader's "never a confident civil reading"
#: rule can be exercised: white police (…警, red 警), black Hong Kong/Macau (粤Z…港/澳),
#: black embassy (使…, red 使), white armed police (red WJ, then province and digits) and
#: yellow coach (…学, red 学). Seven cells like a single-row plate.
SPECIAL_KINDS: tuple[PlateKind, ...] = ("police", "hk_macau", "embassy", "armed_police",
                                        "coach")
#: The condition a frame set is balanced over; "clean" still has small angles.
CONDITION_TAGS = ("clean", "angle", "blur", "noise", "night", "dirt", "mixed")

CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")
LATIN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf")
MM = 2  # plate drawing scale, pixels per millimetre

# Province characters weighted towards the coal belt (Shaanxi, Shanxi, Inner Mongolia, ...).
_PROVINCE_WEIGHTS = {"陕": 6, "晋": 6, "蒙": 5, "宁": 3, "甘": 3, "豫": 3, "冀": 2, "鲁": 2}
_OTHER_PROVINCES = "京津沪渝云辽黑湘皖新苏浙赣鄂桂吉闽贵粤青藏川琼"

# (background BGR, character BGR) per plate kind; green is a vertical gradient.
_PLATE_BG = {"blue": (160, 72, 10), "yellow": (20, 190, 245), "yellow_double": (20, 190, 245),
             "police": (235, 235, 235), "hk_macau": (25, 25, 25), "embassy": (25, 25, 25),
             "armed_police": (235, 235, 235), "coach": (20, 190, 245)}
_PLATE_FG = {"blue": (250, 250, 250), "yellow": (20, 20, 20), "yellow_double": (20, 20, 20),
             "green": (20, 20, 20), "police": (20, 20, 20), "hk_macau": (245, 245, 245),
             "embassy": (245, 245, 245), "armed_police": (20, 20, 20), "coach": (20, 20, 20)}
_RED = (30, 30, 210)
_RED_MARKS = "警使学WJ"  # drawn in red on special plates
_CAB_COLOURS = [(40, 40, 200), (170, 90, 30), (230, 230, 230), (30, 180, 230), (60, 140, 60),
                (30, 110, 230), (120, 120, 120), (200, 120, 40)]


class FontMissingError(RuntimeError):
    """A font the renderer needs is not installed."""


@dataclass(frozen=True)
class Conditions:
    """How the camera sees the plate. Defaults are a clear daylight frame, face on."""

    angle_deg: float = 0.0  # yaw of the truck front relative to the camera, ±25°
    roll_deg: float = 0.0  # small camera roll
    blur: float = 0.0  # Gaussian sigma in frame pixels
    motion: int = 0  # horizontal motion-blur length in pixels (0 = none)
    noise: float = 0.0  # sensor noise standard deviation, 0..255 scale
    night: bool = False
    dirt: float = 0.0  # 0..1, mud on plate and truck
    occlude: float = 0.0  # 0..1, right-hand share of the plate hidden (half-visible plates)
    scale: float = 1.0  # truck size relative to a typical gate distance
    # What broke the reader on real photos (issue 11); all off by default, so the frame
    # sets of the existing tags are unchanged. See random_conditions(tag="wild").
    shift: float = 0.0  # horizontal offset of the truck, share of the frame width
    timestamp: bool = False  # the camera's date/time and lane overlay (OSD)
    glare: float = 0.0  # 0..1, windscreen glare: a veil and a bright diagonal band
    clutter: bool = False  # signs and text in the background (confusers)
    tag: str = "clean"


@dataclass(frozen=True)
class FrameLabel:
    """Ground truth for one frame: plate text (None for an empty lane) and where it is."""

    plate: str | None
    kind: str | None
    conditions: Conditions
    seed: int
    quad: tuple[tuple[float, float], ...] | None = None  # plate corners, TL TR BR BL
    bbox: tuple[int, int, int, int] | None = None  # x, y, w, h of the quad, clipped
    extra: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        c = asdict(self.conditions)
        return {"plate": self.plate or "", "kind": self.kind or "", "condition": c.pop("tag"),
                **c, "bbox": " ".join(map(str, self.bbox)) if self.bbox else "", "seed": self.seed}


@functools.lru_cache(maxsize=8)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    if not path.exists():
        if path == LATIN_FONT and CJK_FONT.exists():
            return _font(CJK_FONT, size)
        raise FontMissingError(
            f"font {path} is not installed; run scripts/setup (Debian fonts-wqy-zenhei, "
            "fonts-dejavu-core)")
    return ImageFont.truetype(str(path), size)


@functools.lru_cache(maxsize=256)
def _glyph(ch: str, w: int, h: int) -> np.ndarray:
    """An ink mask of ``ch`` stretched to w x h, the way plate fonts fill their cell."""
    font = _font(LATIN_FONT if ch.isascii() else CJK_FONT, 160)
    img = Image.new("L", (240, 240), 0)
    ImageDraw.Draw(img).text((20, 20), ch, font=font, fill=255)
    arr = np.asarray(img)
    if not ch.isascii():
        # The plate font's province characters are as heavy as its letters; Zen Hei is a
        # regular weight, so thicken its strokes.
        arr = cv2.dilate(arr, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    ys, xs = np.nonzero(arr > 40)
    crop = arr[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    # Plate fonts keep stroke weight: scale to the cell height, squeeze to the cell width
    # only when too wide, and centre.
    ch_h, ch_w = crop.shape
    gw = min(w, max(1, int(round(ch_w * h / ch_h))))
    out = np.zeros((h, w), np.uint8)
    x0 = (w - gw) // 2
    out[:, x0: x0 + gw] = cv2.resize(crop, (gw, h), interpolation=cv2.INTER_AREA)
    return out


def _put(img: np.ndarray, ch: str, x_mm: float, y_mm: float, w_mm: float, h_mm: float,
         colour: tuple[int, int, int]) -> None:
    x, y, w, h = (int(round(v * MM)) for v in (x_mm, y_mm, w_mm, h_mm))
    mask = _glyph(ch, w, h).astype(np.float32)[..., None] / 255.0
    roi = img[y: y + h, x: x + w].astype(np.float32)
    img[y: y + h, x: x + w] = (roi * (1 - mask) + np.array(colour) * mask).astype(np.uint8)


def kind_for(plate: str) -> PlateKind:
    """The usual plate kind for a text: green for new energy, double-row for trailers."""
    if is_new_energy(plate):
        return "green"
    if plate.endswith("挂"):
        return "yellow_double"
    return "blue"


def render_plate(text: str, kind: PlateKind) -> np.ndarray:
    """The plate alone, BGR, at 2 px/mm (440x140 mm, 480x140 green, 440x220 double-row)."""
    if kind == "green":
        w_mm, h_mm = 480, 140
    elif kind == "yellow_double":
        w_mm, h_mm = 440, 220
    else:
        w_mm, h_mm = 440, 140
    W, H = w_mm * MM, h_mm * MM
    fg = _PLATE_FG[kind]
    if kind == "green":
        t = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
        top, bottom = np.array([225, 245, 215.0]), np.array([90, 190, 40.0])
        img = np.broadcast_to(top * (1 - t) + bottom * t, (H, W, 3)).astype(np.uint8).copy()
        border = (40, 120, 30)
    else:
        img = np.full((H, W, 3), _PLATE_BG[kind], np.uint8)
        border = fg
    cv2.rectangle(img, (3 * MM, 3 * MM), (W - 3 * MM, H - 3 * MM), border, MM * 2,
                  cv2.LINE_AA)
    for sx in (0.25, 0.75):  # mounting screws
        cv2.circle(img, (int(W * sx), 10 * MM), 4 * MM, (200, 200, 200), -1, cv2.LINE_AA)
    if kind == "yellow_double":
        _put(img, text[0], 110, 15, 80, 60, fg)
        _put(img, text[1], 250, 15, 80, 60, fg)
        for i, ch in enumerate(text[2:]):
            _put(img, ch, 27.5 + i * 80, 90, 65, 110, fg)
    elif kind == "green":
        xs: list[float] = [15.0, 67.0] + [162.0 + k * 52 for k in range(6)]
        for ch, x in zip(text, xs, strict=True):
            _put(img, ch, x, 25, 43, 90, fg)
        cv2.circle(img, (int(134 * MM), 70 * MM), 3 * MM, fg, -1, cv2.LINE_AA)
    else:
        xs = [15.5, 72.5] + [151.5 + k * 57 for k in range(5)]
        special = kind in SPECIAL_KINDS
        for i, (ch, x) in enumerate(zip(text, xs, strict=True)):
            red = special and ch in _RED_MARKS and (ch not in "WJ" or i < 2)
            _put(img, ch, x, 25, 45, 90, _RED if red else fg)
        cv2.circle(img, (int(134.5 * MM), 70 * MM), 5 * MM, fg, -1, cv2.LINE_AA)
    return img


def random_plate(rng: np.random.Generator, kind: PlateKind) -> str:
    """A plausible plate text for ``kind``, mostly from provinces of the coal belt."""
    provs = list(_PROVINCE_WEIGHTS) + list(_OTHER_PROVINCES)
    weights = np.array([_PROVINCE_WEIGHTS.get(p, 0.5) for p in provs], dtype=float)
    prov = str(rng.choice(provs, p=weights / weights.sum()))
    letter = str(rng.choice(list(LETTERS)))

    def serial(n: int) -> str:
        return "".join(str(rng.choice(list(LETTERS))) if rng.random() < 0.3
                       else str(rng.choice(list(DIGITS))) for _ in range(n))

    digits = "".join(str(rng.choice(list(DIGITS))) for _ in range(6))
    if kind == "police":
        return prov + letter + digits[:4] + "警"
    if kind == "hk_macau":
        return "粤Z" + serial(4) + str(rng.choice(["港", "澳"]))
    if kind == "embassy":
        return "使" + digits
    if kind == "armed_police":
        return "WJ" + prov + digits[:4]
    if kind == "coach":
        return prov + letter + digits[:4] + "学"
    if kind == "green":
        if rng.random() < 0.7:
            tail = (str(rng.choice(list("DF"))) + str(rng.choice(list(ALNUM)))
                    + "".join(str(rng.choice(list(DIGITS))) for _ in range(4)))
        else:
            tail = "".join(str(rng.choice(list(DIGITS))) for _ in range(5)) + str(
                rng.choice(list("DF")))
        return prov + letter + tail
    if kind == "yellow_double" and rng.random() < 0.3:
        return prov + letter + serial(4) + "挂"
    return prov + letter + serial(5)


#: Tags beyond CONDITION_TAGS (not in the balanced frame sets, whose figures stay
#: comparable): "wild" is what broke the reader on real photos: plates from about 60 to
#: 400 px wide anywhere across the frame, windscreen glare, a timestamp overlay, cluttered
#: backgrounds and dirty plates.
EXTRA_TAGS = ("wild",)


def random_conditions(rng: np.random.Generator, tag: str) -> Conditions:
    """Conditions for one frame of a set balanced over CONDITION_TAGS (or EXTRA_TAGS)."""
    if tag == "wild":
        return Conditions(angle_deg=float(rng.uniform(-15, 15)),
                          roll_deg=float(rng.uniform(-4, 4)),
                          scale=float(np.exp(rng.uniform(np.log(0.35), np.log(2.0)))),
                          shift=float(rng.uniform(-0.3, 0.3)), timestamp=True,
                          glare=float(rng.uniform(0.15, 0.5)) if rng.random() < 0.5 else 0.0,
                          clutter=True, dirt=float(rng.uniform(0.2, 0.6))
                          if rng.random() < 0.4 else 0.0,
                          noise=float(rng.uniform(0, 8)), tag=tag)
    small = float(rng.uniform(-6, 6))
    base: dict[str, Any] = {"angle_deg": small, "roll_deg": float(rng.uniform(-2, 2)),
                            "scale": float(rng.uniform(0.85, 1.25)), "tag": tag}
    if tag == "angle":
        base["angle_deg"] = float(rng.choice([-1, 1]) * rng.uniform(12, 25))
    elif tag == "blur":
        if rng.random() < 0.5:
            base["blur"] = float(rng.uniform(1.0, 2.2))
        else:
            base["motion"] = int(rng.integers(5, 12))
    elif tag == "noise":
        base["noise"] = float(rng.uniform(10, 25))
    elif tag == "night":
        base["night"] = True
        base["noise"] = float(rng.uniform(3, 8))
    elif tag == "dirt":
        base["dirt"] = float(rng.uniform(0.3, 0.8))
    elif tag == "mixed":
        base.update(angle_deg=float(rng.uniform(-18, 18)), blur=float(rng.uniform(0, 1.3)),
                    noise=float(rng.uniform(0, 12)), night=bool(rng.random() < 0.35),
                    dirt=float(rng.uniform(0, 0.5)))
    return Conditions(**base)


def _homography_yaw(w: int, h: int, angle_deg: float, roll_deg: float) -> np.ndarray:
    """Project a w x h plane turned ``angle_deg`` about its vertical centre line."""
    f = 1.4 * w
    a, r = math.radians(angle_deg), math.radians(roll_deg)
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    dst: list[list[float]] = []
    for x, y in src:
        X, Y = x - w / 2, y - h / 2
        xr, zr = X * math.cos(a), X * math.sin(a)
        px, py = f * xr / (f + zr), f * Y / (f + zr)
        dst.append([px * math.cos(r) - py * math.sin(r), px * math.sin(r) + py * math.cos(r)])
    return cv2.getPerspectiveTransform(src, np.array(dst, np.float32))


def _dirty(img: np.ndarray, rng: np.random.Generator, amount: float) -> None:
    h, w = img.shape[:2]
    mud = np.zeros((h, w), np.float32)
    for _ in range(int(3 + amount * 12)):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        ax = (int(rng.integers(w // 30, w // 8)), int(rng.integers(h // 20, h // 5)))
        cv2.ellipse(mud, c, ax, float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(0.3, 0.8)),
                    -1)
    speck = (rng.random((h, w)) < 0.02 * amount).astype(np.float32)
    mud = np.clip(cv2.GaussianBlur(mud, (0, 0), 6) * amount + speck * 0.8, 0, 0.85)[..., None]
    brown = np.array([40, 70, 95], np.float32)
    img[:] = (img.astype(np.float32) * (1 - mud) + brown * mud).astype(np.uint8)


def _background(rng: np.random.Generator) -> np.ndarray:
    bg = np.empty((FRAME_H, FRAME_W, 3), np.uint8)
    horizon = int(rng.integers(250, 380))
    sky = np.array([rng.integers(190, 240), rng.integers(170, 215), rng.integers(140, 190)])
    bg[:horizon] = sky
    bg[horizon:] = np.array([rng.integers(90, 130)] * 3)
    for _ in range(int(rng.integers(2, 6))):  # buildings, sheds, coal heaps
        x = int(rng.integers(0, FRAME_W))
        w, h = int(rng.integers(80, 400)), int(rng.integers(60, 220))
        col = tuple(int(v) for v in rng.integers(30, 200, 3))
        cv2.rectangle(bg, (x, horizon - h), (x + w, horizon), col, -1)
    return bg


def _truck(rng: np.random.Generator, plate_img: np.ndarray | None) -> tuple[
        np.ndarray, np.ndarray | None]:
    """A flat truck front 1000 px wide, and where its plate sits (quad) if any."""
    W, H = 1000, 760
    cab = tuple(int(v) for v in _CAB_COLOURS[int(rng.integers(0, len(_CAB_COLOURS)))])
    img = np.full((H, W, 3), cab, np.uint8)
    cv2.rectangle(img, (70, 40), (W - 70, 300), (50, 45, 40), -1)  # windscreen
    cv2.line(img, (W // 2, 40), (W // 2, 300), cab, 8)
    for y in range(360, 540, 22):  # grille bars: strong horizontal edges
        cv2.rectangle(img, (260, y), (W - 260, y + 10), (70, 70, 70), -1)
    for x in (60, W - 220):  # headlights
        cv2.rectangle(img, (x, 460), (x + 160, 530), (230, 235, 235), -1)
        cv2.rectangle(img, (x, 460), (x + 160, 530), (90, 90, 90), 4)
    if rng.random() < 0.5:  # maker's badge in Chinese and Latin text: a confuser
        txt = str(rng.choice(["陕汽重卡", "SHACMAN", "解放", "HOWO", "欧曼"]))
        pil = Image.fromarray(img)
        ImageDraw.Draw(pil).text((W // 2 - 110, 315), txt, fill=(220, 220, 220),
                                 font=_font(CJK_FONT, 40))
        img = np.asarray(pil).copy()
    cv2.rectangle(img, (0, 580), (W, 700), (45, 45, 45), -1)  # bumper
    quad = None
    if plate_img is not None:
        ph, pw = plate_img.shape[:2]
        tw = 176 if pw < 900 else 192  # 440 mm plate on a 2.5 m cab
        th = int(round(tw * ph / pw))
        x0, y0 = W // 2 - tw // 2 + int(rng.integers(-60, 60)), 640 - th // 2
        img[y0: y0 + th, x0: x0 + tw] = cv2.resize(plate_img, (tw, th),
                                                   interpolation=cv2.INTER_AREA)
        quad = np.array([[x0, y0], [x0 + tw, y0], [x0 + tw, y0 + th], [x0, y0 + th]],
                        np.float32)
    cv2.rectangle(img, (0, 700), (W, H), (25, 25, 25), -1)  # shadow under the bumper
    return img, quad


@dataclass(frozen=True)
class Scene:
    """What is in front of the camera, before the camera sees it (see :func:`render_scene`)."""

    frame: np.ndarray
    quad: np.ndarray | None
    plate: str | None
    kind: str | None
    conditions: Conditions
    seed: int
    rng_state: dict[str, Any]  # the scene generator's state, for the default exposure

    def expose(self, camera_seed: int | None = None) -> tuple[np.ndarray, FrameLabel]:
        """One camera frame of the scene and its label.

        Without ``camera_seed`` the sensor noise follows on from the scene's seed (a frame
        set is reproducible from one seed). Frames of one standing truck share the scene and
        differ in ``camera_seed``: fresh sensor noise and a sub-pixel shake of up to 1 px
        (engine vibration, a swaying camera arm), so voting is tested against the variation
        a real camera gives, no more.
        """
        frame, quad = self.frame, self.quad
        rng = np.random.default_rng()
        rng.bit_generator.state = self.rng_state
        if camera_seed is not None:
            rng = np.random.default_rng(camera_seed)
            dx, dy = rng.uniform(-1.0, 1.0, 2)
            shake = np.array([[1, 0, dx], [0, 1, dy]], np.float64)
            frame = cv2.warpAffine(frame, shake, (FRAME_W, FRAME_H), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
            if quad is not None:
                quad = quad + np.array([dx, dy], np.float32)
        out = _apply_camera(frame, self.conditions, rng, quad)
        label = FrameLabel(plate=self.plate, kind=self.kind, conditions=self.conditions,
                           seed=self.seed,
                           quad=tuple((float(x), float(y)) for x, y in quad)
                           if quad is not None else None,
                           bbox=_bbox(quad) if quad is not None else None)
        return out, label


def render_frame(plate: str | None, *, kind: str = "auto",
                 conditions: Conditions | None = None,
                 seed: int = 0, camera_seed: int | None = None) -> tuple[np.ndarray, FrameLabel]:
    """A 1280x720 BGR frame of a truck front carrying ``plate`` (None: an empty lane).

    ``seed`` fixes the scene; ``camera_seed`` the exposure (see :meth:`Scene.expose`).
    """
    return render_scene(plate, kind=kind, conditions=conditions, seed=seed).expose(camera_seed)


def render_scene(plate: str | None, *, kind: str = "auto",
                 conditions: Conditions | None = None, seed: int = 0) -> Scene:
    """The truck front carrying ``plate`` (None: an empty lane) as the camera would see it."""
    cond = conditions or Conditions()
    rng = np.random.default_rng(seed)
    frame = _background(rng)
    quad_out: np.ndarray | None = None
    plate_kind: str | None = None
    if plate is not None:
        plate_kind = kind_for(plate) if kind == "auto" else kind
        if plate_kind not in KINDS + SPECIAL_KINDS:
            raise ValueError(f"unknown plate kind {kind!r}; use one of "
                             f"{', '.join(KINDS + SPECIAL_KINDS)}, auto")
        pimg = render_plate(plate, plate_kind)  # type: ignore[arg-type,unused-ignore]
        if cond.dirt > 0:
            _dirty(pimg, rng, cond.dirt)
        if cond.occlude > 0:  # a mud flap or the frame edge hides the right-hand part
            cut = int(pimg.shape[1] * (1 - cond.occlude))
            pimg[:, cut:] = (45, 45, 45)
        truck, quad = _truck(rng, pimg)
        if cond.dirt > 0:
            _dirty(truck[560:], rng, cond.dirt * 0.5)
        th, tw = truck.shape[:2]
        scale = 0.95 * cond.scale
        S = np.array([[scale, 0, 0], [0, scale, 0], [0, 0, 1]], np.float64)
        Hy = _homography_yaw(tw, th, cond.angle_deg, cond.roll_deg)
        cx = FRAME_W / 2 + float(rng.uniform(-120, 120)) + cond.shift * FRAME_W
        cy = FRAME_H - th * scale / 2 - float(rng.uniform(0, 40))
        T = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]], np.float64)
        M = T @ S @ Hy
        warped = cv2.warpPerspective(truck, M, (FRAME_W, FRAME_H), flags=cv2.INTER_LINEAR)
        mask = cv2.warpPerspective(np.full((th, tw), 255, np.uint8), M, (FRAME_W, FRAME_H))
        frame[mask > 127] = warped[mask > 127]
        assert quad is not None
        quad_out = cv2.perspectiveTransform(quad[None], M)[0]
        if cond.night:  # headlights on: glare around the lamps
            for lx in (140, tw - 140):
                p = cv2.perspectiveTransform(np.array([[[lx, 495]]], np.float32), M)[0, 0]
                glare: np.ndarray = np.zeros((FRAME_H, FRAME_W), np.float32)
                cv2.circle(glare, (int(p[0]), int(p[1])), 60, 1.0, -1)
                glare = cv2.GaussianBlur(glare, (0, 0), 40)[..., None]
                frame = np.clip(frame + glare * 900, 0, 255).astype(np.uint8)
    if cond.clutter:
        frame = _clutter(frame, rng, quad_out)
    if cond.glare > 0:
        frame = _glare(frame, rng, cond.glare)
    if cond.timestamp:
        frame = _timestamp(frame, rng)
    return Scene(frame=frame, quad=quad_out, plate=plate, kind=plate_kind, conditions=cond,
                 seed=seed, rng_state=dict(rng.bit_generator.state))


def _clutter(frame: np.ndarray, rng: np.random.Generator, quad: np.ndarray | None
             ) -> np.ndarray:
    """Signs with text in the background: blue and yellow boards like plates' colours."""
    pil = Image.fromarray(frame)
    draw = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(2, 5))):
        w, h = int(rng.integers(160, 420)), int(rng.integers(40, 110))
        x, y = int(rng.integers(0, FRAME_W - w)), int(rng.integers(0, 300))
        if quad is not None and quad[:, 1].min() < y + h and x < quad[:, 0].max() \
                and quad[:, 0].min() < x + w:
            continue  # never over the plate
        bg = [(170, 80, 20), (20, 180, 240), (40, 120, 40), (235, 235, 235)][
            int(rng.integers(0, 4))]
        draw.rectangle((x, y, x + w, y + h), fill=bg)
        txt = str(rng.choice(["煤矿入口", "限速5公里", "过磅请熄火", "安全第一", "EXIT 3",
                              "禁止超载", "计量站"]))
        draw.text((x + 10, y + h // 5), txt, fill=(250, 250, 250) if bg[0] < 200 else (20,) * 3,
                  font=_font(CJK_FONT, int(h * 0.55)))
    return np.asarray(pil).copy()


def _glare(frame: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Shooting through a windscreen: a veil of reflected sky and a bright diagonal band."""
    yy, xx = np.mgrid[0:FRAME_H, 0:FRAME_W].astype(np.float32)
    a = float(rng.uniform(0.3, 1.2))
    off = float(rng.uniform(-400, 400))
    d = np.abs(yy * np.cos(a) - (xx - FRAME_W / 2 - off) * np.sin(a)) / 120.0
    band = np.exp(-d * d)[..., None]
    veil = amount * (0.35 + 0.65 * band)
    out = frame.astype(np.float32) * (1 - veil) + 245.0 * veil
    return np.clip(out, 0, 255).astype(np.uint8)


def _timestamp(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The camera's on-screen display: date, time and lane, white with a dark outline."""
    pil = Image.fromarray(frame)
    draw = ImageDraw.Draw(pil)
    t = f"2026-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d} " \
        f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}:" \
        f"{int(rng.integers(0, 60)):02d}"
    font = _font(CJK_FONT, 30)
    for text, xy in ((t + " 星期五", (20, 16)), (f"入口{int(rng.integers(1, 4))} 地磅", (20, 660))):
        draw.text(xy, text, fill=(255, 255, 255), font=font, stroke_width=2,
                  stroke_fill=(0, 0, 0))
    return np.asarray(pil).copy()


def _apply_camera(frame: np.ndarray, cond: Conditions, rng: np.random.Generator,
                  quad: np.ndarray | None) -> np.ndarray:
    f: np.ndarray = frame.astype(np.float32)
    if cond.night:
        # Dark scene with a bluish cast; the camera's IR/white fill light keeps the
        # retro-reflective plate brighter than its surroundings, as at real gates.
        light: np.ndarray = np.full(f.shape[:2], 0.22, np.float32)
        if quad is not None:
            cv2.fillConvexPoly(light, quad.astype(np.int32), 0.6)
            light = cv2.GaussianBlur(light, (0, 0), 25)
        f = f * light[..., None] * np.array([1.15, 1.0, 0.9], np.float32)
    if cond.blur > 0:
        f = cv2.GaussianBlur(f, (0, 0), cond.blur)
    if cond.motion > 1:
        k = np.zeros((cond.motion, cond.motion), np.float32)
        k[cond.motion // 2, :] = 1.0 / cond.motion
        f = cv2.filter2D(f, -1, k)
    if cond.noise > 0:
        f = f + rng.normal(0, cond.noise, f.shape).astype(np.float32)
    return np.clip(f, 0, 255).astype(np.uint8)


def _bbox(quad: np.ndarray) -> tuple[int, int, int, int]:
    x0, y0 = np.clip(quad.min(axis=0), 0, [FRAME_W, FRAME_H]).astype(int)
    x1, y1 = np.clip(quad.max(axis=0), 0, [FRAME_W, FRAME_H]).astype(int)
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)
