"""Synthetic parametric faces: the suite's embedded default data set (no download needed).

Each identity is a random parametric face drawn with OpenCV: head and jaw shape, skin tone,
ears, hair style and colour, eye spacing/size/iris colour, brows, nose, mouth and lips, and
optional identity traits (facial hair, glasses, moles). Identities are genuinely distinct
(independent parameter draws) but confusable: the parameter ranges overlap and every image adds
nuisance that is often larger than the difference between two neighbouring identities:
expression (smile, open mouth, blink, brow raise), pose (yaw/pitch as feature shifts, roll,
scale, translation), background, illumination (directional gradient, gain, gamma, colour cast),
blur, sensor noise, occlusion (sunglasses band, scarf, random blob) and JPEG quality.

``difficulty`` is one float knob that scales every nuisance (0 = clean frontal images, 1 = the
default, 2 = very hard). Output is exactly the InsightFace layout: train.rec/train.idx/property
for the training identities, an ``lfw.bin``-style verification file of ``num_pairs`` pairs from
``heldout_identities`` further identities never seen in training (10 folds, half same), and
``manifest.json``. Everything is a function of ``seed``: identity k's face comes from
``default_rng([seed, 0, k])``, its image j from ``default_rng([seed, 1, k, j])``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from common.binfile import write_bin
from common.convert import make_pairs
from common.face_dataset import FaceRecordWriter
from common.images import encode_jpeg

DEFAULTS = {"num_identities": 200, "images_per_identity": 20, "heldout_identities": 50,
            "num_pairs": 6000, "image_size": 112, "difficulty": 1.0, "seed": 0}

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel coordinates
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA

_HAIR = np.array([[20, 15, 12], [60, 40, 25], [110, 75, 40], [190, 150, 90], [150, 60, 25],
                  [170, 170, 170], [235, 220, 170]], dtype=float)
_IRIS = np.array([[70, 40, 20], [40, 90, 150], [60, 110, 60], [100, 100, 110], [30, 20, 15]],
                 dtype=float)


def _pt(x, y):
    return int(round(x * _ONE)), int(round(y * _ONE))


def _col(c):
    return tuple(float(v) for v in np.clip(c, 0, 255))


def _ellipse(img, c, axes, color, angle=0.0, a0=0, a1=360, thickness=-1):
    cv2.ellipse(img, _pt(*c), _pt(max(axes[0], 0.3), max(axes[1], 0.3)), angle, a0, a1,
                _col(color), thickness, _AA, _SHIFT)


def _poly(img, pts, color, closed=False, thickness=1, fill=False):
    arr = np.round(np.asarray(pts, dtype=float) * _ONE).astype(np.int32).reshape(-1, 1, 2)
    if fill:
        cv2.fillPoly(img, [arr], _col(color), _AA, _SHIFT)
    else:
        cv2.polylines(img, [arr], closed, _col(color), max(1, int(round(thickness))), _AA, _SHIFT)


def identity_params(rng) -> dict:
    """Random face parameters of one identity (sizes as fractions of the image side)."""
    u = rng.uniform
    tone = u(0, 1)
    skin = (1 - tone) * np.array([95, 62, 45]) + tone * np.array([245, 208, 185])
    skin = skin + rng.normal(0, 8, 3)
    hair = _HAIR[rng.integers(len(_HAIR))] + rng.normal(0, 12, 3)
    return {
        "face_w": u(0.25, 0.34), "face_h": u(0.34, 0.44), "jaw": u(0.68, 1.0),
        "jaw_h": u(0.45, 0.65), "skin": skin.tolist(), "hair": hair.tolist(),
        "hair_style": int(rng.integers(5)), "hairline": u(0.55, 0.8), "hair_vol": u(0.02, 0.08),
        "ear": u(0.04, 0.07),
        "eye_dx": u(0.09, 0.135), "eye_y": u(-0.06, 0.0), "eye_w": u(0.035, 0.055),
        "eye_h": u(0.35, 0.6), "iris": (_IRIS[rng.integers(len(_IRIS))] + rng.normal(0, 10, 3))
        .tolist(), "iris_r": u(0.45, 0.7),
        "brow_gap": u(0.035, 0.06), "brow_th": u(1.0, 3.5), "brow_len": u(0.8, 1.4),
        "brow_tilt": u(-0.25, 0.25), "brow_arch": u(0.0, 0.025),
        "nose_len": u(0.10, 0.17), "nose_w": u(0.025, 0.05), "nose_dark": u(0.55, 0.8),
        "mouth_y": u(0.17, 0.24), "mouth_w": u(0.06, 0.1), "lip_th": u(1.0, 3.5),
        "lip": (skin * u(0.55, 0.8) + np.array([40, -5, -5])).tolist(), "smile": u(-0.4, 0.6),
        "beard": int(rng.random() < 0.25) * int(rng.integers(1, 3)),
        "glasses": bool(rng.random() < 0.15), "glasses_r": u(0.045, 0.06),
        "glasses_col": rng.uniform(0, 120, 3).tolist(),
        "moles": rng.uniform(-1, 1, (int(rng.integers(0, 3)), 2)).tolist(),
        "blush": u(0, 25),
    }


def _background(rng, s, d):
    base = rng.uniform(30, 225, 3)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    ang = rng.uniform(0, 2 * math.pi)
    grad = (np.cos(ang) * xx + np.sin(ang) * yy - 0.5)[..., None] * rng.uniform(0, 80) * min(d, 1.5)
    img = np.clip(base + grad, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 1 + int(round(3 * d))))):  # clutter
        c = _pt(*rng.uniform(0, s, 2))
        cv2.circle(img, c, int(rng.uniform(3, s / 4) * _ONE), _col(rng.uniform(0, 255, 3)), -1,
                   _AA, _SHIFT)
    return img


def render_face(p: dict, rng, size: int = 112, difficulty: float = 1.0) -> np.ndarray:
    """One RGB uint8 image of identity ``p`` with nuisance drawn from ``rng``."""
    s, d = float(size), float(difficulty)
    n = lambda sigma: rng.normal(0, sigma * d)  # noqa: E731  nuisance scaled by difficulty
    img = _background(rng, size, d)
    yaw = float(np.clip(n(0.22), -0.6, 0.6))
    pitch = float(np.clip(n(0.12), -0.35, 0.35))
    cx, cy = 0.5 * s, 0.5 * s
    fw, fh = p["face_w"] * s * (1 - 0.2 * abs(yaw)), p["face_h"] * s
    # features move with yaw/pitch; farther from the head's axis moves more (nose > eyes)
    fx = lambda rel, depth=0.6: cx + rel * s * (1 - 0.35 * abs(yaw)) + yaw * depth * fw  # noqa: E731
    fy = lambda rel, depth=0.6: cy + rel * s + pitch * depth * fh  # noqa: E731
    skin = np.asarray(p["skin"]) * math.exp(n(0.04))
    hair = np.asarray(p["hair"])
    top = cy - fh * p["hairline"]
    if p["hair_style"] == 3:  # long hair behind the head
        _ellipse(img, (cx + yaw * 0.1 * fw, cy + 0.15 * fh), (fw * 1.25, fh * 1.1), hair)
    for side in (-1, 1):  # ears (the far one hides as the head turns)
        if side * yaw < 0.3:
            _ellipse(img, (cx + side * fw * 0.98 + yaw * 0.2 * fw, fy(p["eye_y"] + 0.03, 0.2)),
                     (p["ear"] * s * 0.55 * (1 - abs(yaw)), p["ear"] * s), skin * 0.92)
    _ellipse(img, (cx + yaw * 0.1 * fw, cy), (fw, fh), skin)
    _ellipse(img, (cx + yaw * 0.2 * fw, cy + fh * 0.35), (fw * p["jaw"], fh * p["jaw_h"]), skin)
    if p["blush"] > 0:
        for side in (-1, 1):
            _ellipse(img, (fx(side * p["eye_dx"] * 1.2), fy(0.09)), (0.035 * s, 0.022 * s),
                     skin + np.array([p["blush"], -p["blush"] / 3, -p["blush"] / 3]))
    # hair on top
    vol = p["hair_vol"] * s
    if p["hair_style"] != 0:
        _ellipse(img, (cx + yaw * 0.1 * fw, top), (fw + vol, fh * 0.45 + vol), hair, 0, 180, 360)
        if p["hair_style"] == 2:  # fringe
            _poly(img, [(cx - fw * 0.9, top), (cx + fw * 0.6, top), (cx + fw * 0.2, top + 0.1 * s)],
                  hair, fill=True)
        if p["hair_style"] == 4:  # curls
            for a in np.linspace(math.pi, 2 * math.pi, 7):
                _ellipse(img, (cx + math.cos(a) * fw, top + math.sin(a) * fh * 0.45),
                         (vol + 2, vol + 2), hair * 0.9)
    else:
        _ellipse(img, (cx + yaw * 0.1 * fw, top + 0.02 * s), (fw * 0.95, fh * 0.3), hair, 0, 180,
                 360, thickness=max(1, int(vol / 2)))
    # eyes, irises, brows
    smile = p["smile"] + n(0.5)
    blink = rng.random() < 0.08 * d
    open_ = max(0.15, 1 + n(0.25)) * (0.15 if blink else 1)
    brow_up = n(0.012) * s
    for side in (-1, 1):
        ex, ey = fx(side * p["eye_dx"]), fy(p["eye_y"])
        ew = p["eye_w"] * s
        eh = ew * p["eye_h"] * open_
        _ellipse(img, (ex, ey), (ew, eh), (235, 232, 225))
        _ellipse(img, (ex + yaw * 0.3 * ew, ey), (ew * p["iris_r"] * 0.8, min(eh, ew * p["iris_r"])
                                                   * 0.95), p["iris"])
        _ellipse(img, (ex + yaw * 0.3 * ew, ey), (ew * 0.18, min(eh, ew * 0.18)), (10, 10, 10))
        _ellipse(img, (ex, ey), (ew, eh), skin * 0.5, thickness=1)
        by = ey - p["brow_gap"] * s - brow_up
        bl = ew * p["brow_len"]
        pts = [(ex - side * bl, by + p["brow_tilt"] * bl * 0.3),
               (ex, by - p["brow_arch"] * s), (ex + side * bl, by - p["brow_tilt"] * bl * 0.3)]
        _poly(img, pts, hair * 0.8, thickness=p["brow_th"] * s / 112)
    # nose
    nl, nw = p["nose_len"] * s, p["nose_w"] * s
    tip = (fx(0.0, 1.0), fy(p["eye_y"], 1.0) + nl)
    bridge = (fx(0.0, 0.9) - 0.2 * nw, fy(p["eye_y"], 0.9))
    _poly(img, [bridge, (tip[0] - 0.3 * nw, tip[1] - 0.1 * nl), tip], skin * p["nose_dark"])
    for side in (-1, 1):
        _ellipse(img, (tip[0] + side * nw * 0.6, tip[1] - 0.02 * s), (nw * 0.3, nw * 0.18),
                 skin * p["nose_dark"] * 0.7)
    # mouth: a parabola whose bend is the smile; open mouth adds a dark ellipse
    mx, my = fx(0.0, 0.7), fy(p["mouth_y"], 0.7)
    mw = p["mouth_w"] * s * (1 + 0.15 * max(smile, 0))
    mouth_open = max(0.0, n(0.35)) * 0.04 * s
    if mouth_open > 0.8:
        _ellipse(img, (mx, my + mouth_open * 0.4), (mw * 0.7, mouth_open), (60, 20, 25))
    xs = np.linspace(-1, 1, 9)
    curve = [(mx + x * mw, my - smile * 0.025 * s * (1 - x * x) + 0.012 * s * smile) for x in xs]
    _poly(img, curve, p["lip"], thickness=p["lip_th"] * s / 112)
    # identity traits
    hair_dark = hair * 0.85
    if p["beard"] >= 1:
        _poly(img, [(mx - mw, my - 0.03 * s), (mx, my - 0.045 * s), (mx + mw, my - 0.03 * s)],
              hair_dark, thickness=3 * s / 112)
    if p["beard"] == 2:
        _ellipse(img, (cx + yaw * 0.2 * fw, cy + fh * 0.35), (fw * p["jaw"], fh * p["jaw_h"]),
                 hair_dark, 0, 20, 160, thickness=max(2, int(0.05 * s)))
    for mole in p["moles"]:
        _ellipse(img, (fx(mole[0] * p["face_w"] * 0.6), fy(0.05 + mole[1] * 0.12)),
                 (0.012 * s, 0.012 * s), skin * 0.45)
    if p["glasses"]:
        r = p["glasses_r"] * s
        for side in (-1, 1):
            _ellipse(img, (fx(side * p["eye_dx"]), fy(p["eye_y"])), (r, r * 0.8), p["glasses_col"],
                     thickness=max(1, int(s / 60)))
        _poly(img, [(fx(-p["eye_dx"]) + r, fy(p["eye_y"])), (fx(p["eye_dx"]) - r, fy(p["eye_y"]))],
              p["glasses_col"], thickness=max(1, int(s / 80)))
    return _nuisance(img, rng, d)


def _nuisance(img, rng, d):
    s = img.shape[0]
    # roll, scale, translation
    angle = float(np.clip(rng.normal(0, 9 * d), -35, 35))
    scale = float(np.clip(1 + rng.normal(0, 0.07 * d), 0.7, 1.3))
    tx, ty = rng.normal(0, 0.04 * s * d, 2)
    m = cv2.getRotationMatrix2D((s / 2, s / 2), angle, scale)
    m[:, 2] += (tx, ty)
    img = cv2.warpAffine(img, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    # occlusion
    if rng.random() < 0.25 * d:
        kind = int(rng.integers(3))
        color = _col(rng.uniform(0, 255, 3))
        if kind == 0:  # sunglasses band
            y = int(s * rng.uniform(0.38, 0.48))
            cv2.rectangle(img, (int(s * 0.2), y), (int(s * 0.8), y + int(s * 0.1)), color, -1)
        elif kind == 1:  # scarf
            cv2.rectangle(img, (0, int(s * rng.uniform(0.68, 0.8))), (s, s), color, -1)
        else:
            c = _pt(*rng.uniform(0.2 * s, 0.8 * s, 2))
            cv2.ellipse(img, c, _pt(*rng.uniform(0.08 * s, 0.2 * s, 2)), float(rng.uniform(0, 180)),
                        0, 360, color, -1, _AA, _SHIFT)
    # illumination: directional gradient, gain, gamma, colour cast
    x = img.astype(np.float32) / 255.0
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s - 0.5
    ang = rng.uniform(0, 2 * math.pi)
    light = 1 + rng.uniform(0, 1.1 * d) * (np.cos(ang) * xx + np.sin(ang) * yy)
    gain = math.exp(rng.normal(0, 0.22 * d))
    cast = np.exp(rng.normal(0, 0.06 * d, 3)).astype(np.float32)
    gamma = math.exp(rng.normal(0, 0.18 * d))
    x = np.clip(x * light[..., None] * gain * cast, 0, 1) ** gamma
    # blur and noise
    sigma = rng.uniform(0, 1.4 * d) if rng.random() < 0.6 else 0.0
    if sigma > 0.3:
        x = cv2.GaussianBlur(x, (0, 0), sigma)
    x = x + rng.normal(0, rng.uniform(0, 0.035 * d), x.shape).astype(np.float32)
    img = np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)
    return img


def jpeg_quality(rng, difficulty: float) -> int:
    low = int(np.clip(95 - 60 * difficulty, 20, 95))
    return int(rng.integers(low, 96))


def render_identity(params, seed, identity, count, size, difficulty):
    """Encoded JPEGs of images 0..count-1 of one identity (deterministic)."""
    out = []
    for j in range(count):
        rng = np.random.default_rng([seed, 1, identity, j])
        img = render_face(params, rng, size, difficulty)
        out.append(encode_jpeg(img, jpeg_quality(rng, difficulty)))
    return out


def generate(out_dir, num_identities: int = DEFAULTS["num_identities"],
             images_per_identity: int = DEFAULTS["images_per_identity"],
             num_pairs: int = DEFAULTS["num_pairs"],
             heldout_identities: int = DEFAULTS["heldout_identities"],
             image_size: int = DEFAULTS["image_size"], difficulty: float = DEFAULTS["difficulty"],
             seed: int = DEFAULTS["seed"], progress: bool = True) -> dict:
    """Write a synthetic InsightFace-layout data set to ``out_dir``; returns the manifest.

    ``num_identities`` training identities (labels 0..num_identities-1) with
    ``images_per_identity`` images each -> train.rec/train.idx/property; ``heldout_identities``
    further identities (same image count) -> ``lfw.bin`` with ``num_pairs`` pairs (0 = none).
    """
    for name, value, low in (("num_identities", num_identities, 1),
                             ("images_per_identity", images_per_identity, 1),
                             ("image_size", image_size, 16)):
        if int(value) < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if not 0 <= float(difficulty) <= 3:
        raise ValueError(f"difficulty must be in [0, 3], got {difficulty}")
    if heldout_identities < 0 or (num_pairs and heldout_identities < 2):
        raise ValueError(f"heldout_identities must be >= 2 when num_pairs > 0, got "
                         f"{heldout_identities}")
    out_dir = Path(out_dir)
    total = num_identities + (heldout_identities if num_pairs else 0)
    params = [identity_params(np.random.default_rng([seed, 0, k])) for k in range(total)]
    bar = tqdm(total=total * images_per_identity, desc="synth", unit="img", disable=not progress)
    with FaceRecordWriter(out_dir, image_size) as writer:
        for k in range(num_identities):
            writer.add_identity(render_identity(params[k], seed, k, images_per_identity,
                                                image_size, difficulty))
            bar.update(images_per_identity)
    manifest = {"generator": "common.synthetic", "version": 1, "seed": seed,
                "num_identities": num_identities, "images_per_identity": images_per_identity,
                "heldout_identities": heldout_identities if num_pairs else 0,
                "num_pairs": num_pairs, "image_size": image_size, "difficulty": difficulty,
                "files": ["train.rec", "train.idx", "property"], "identities": params}
    if num_pairs:
        held = []
        for k in range(num_identities, total):
            held.append(render_identity(params[k], seed, k, images_per_identity, image_size,
                                        difficulty))
            bar.update(images_per_identity)
        pairs = make_pairs([len(h) for h in held], num_pairs, np.random.default_rng([seed, 2]))
        write_bin(out_dir / "lfw.bin", [held[g][i] for a, b, _ in pairs for g, i in (a, b)],
                  [same for _, _, same in pairs])
        manifest["files"].append("lfw.bin")
        manifest["pairs"] = [[a[0] + num_identities, a[1], b[0] + num_identities, b[1], same]
                             for a, b, same in pairs]
    bar.close()
    (out_dir / "manifest.json").write_text(json.dumps(manifest))
    return manifest
