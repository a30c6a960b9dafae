"""Drawing the frames of a procedural clip and encoding them as a silent mp4.

A clip is drawn in three layers, so that a frame costs about a millisecond:

1. once per clip, a background (gradient, room, outdoor scene, texture or bokeh) larger than the frame by a margin
   for the camera, with every visible character's body (torso, clothes, back hair) baked into it;
2. once per clip and character, a head sprite drawn supersampled with PIL and box-filtered down (anti-aliasing),
   plus, lazily, one small variant per (mouth opening, eye state) actually needed, of which only the face box
   (eyes, glasses, mouth) is redrawn;
3. per frame, each head variant pasted at its place (heads nod a pixel or two with their own speech), a camera
   crop (slow pan or zoom, hand-held shake), then lighting (brightness, colour cast, vignette) and sensor noise.

Gender, age and emotion each show through several cues, each drawn at random within the class so that no single
pixel pattern gives them away (see `_sample_person` and `_sample_animal`):

- gender: hair style and length, eyelashes, lipstick, earrings, beards and moustaches (some adult and elderly men),
  jaw and shoulder width, a bow or flower on female animals, clothing colour family (a weak cue);
- age: children have a big round head on a small body, big eyes and low placement; young people slim bodies and
  casual clothes; adults are tallest, in shirts, ties and jackets; the elderly have grey or white hair (or none),
  wrinkles, droopy lids, often glasses, and a stoop;
- emotion: eyebrow angle, mouth curvature at rest, eyelids and eye shape, plus a red tint (angry), tears (sad),
  blushing cheeks (happy), round eyes and an "o" mouth (surprised), and the ears of animals.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
from types import SimpleNamespace

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .schema import AGES, ANIMALS, EMOTIONS, FPS, GENDERS, PERSON, ScenePlan

# Sprites are drawn this many times larger, then box-filtered down: cheap anti-aliasing.
SUPERSAMPLE = 4
# A mouth opening in [0, 1] is drawn at one of this many levels (0 = closed line, the last = wide open).
MOUTH_LEVELS = 12

_SKIN_TONES = (
    (255, 226, 200), (246, 204, 172), (234, 184, 146), (214, 160, 118),
    (186, 132, 94), (152, 104, 72), (116, 78, 54), (88, 58, 42),
)
_HAIR_COLOURS = (
    (28, 26, 28), (58, 40, 28), (96, 64, 40), (132, 84, 48), (150, 62, 36), (214, 184, 112), (196, 112, 52),
)
_DYED_HAIR = ((70, 110, 220), (230, 100, 170), (140, 80, 200), (40, 170, 170))
_GREY_HAIR = ((196, 196, 198), (226, 226, 222), (168, 168, 172), (242, 242, 238), (184, 182, 176))
_FEMALE_CLOTHES = (
    (228, 110, 158), (200, 70, 150), (150, 90, 196), (206, 64, 76), (240, 132, 110), (186, 150, 222), (60, 170, 168),
    (250, 190, 210),
)
_MALE_CLOTHES = (
    (40, 62, 120), (60, 110, 190), (58, 128, 80), (112, 116, 60), (118, 80, 50), (104, 110, 118), (30, 34, 40),
    (80, 150, 200),
)
_BOW_COLOURS = ((236, 70, 130), (220, 40, 60), (170, 90, 210), (250, 200, 60), (255, 140, 190), (90, 200, 220))
_FUR = {
    "cat": ((232, 150, 70), (150, 150, 160), (52, 50, 56), (240, 236, 228), (236, 214, 176), (140, 100, 70)),
    "dog": ((150, 100, 60), (212, 170, 110), (226, 182, 92), (240, 234, 222), (48, 42, 42), (104, 68, 46)),
    "rabbit": ((242, 240, 236), (170, 170, 176), (160, 120, 86), (232, 212, 182), (70, 64, 64)),
    "bear": ((132, 86, 50), (92, 62, 42), (44, 40, 42), (204, 150, 82), (238, 236, 226)),
}
_CAT_IRIS = ((110, 190, 80), (230, 190, 50), (90, 160, 220), (220, 140, 40))
_IRIS = ((70, 48, 30), (40, 90, 150), (60, 120, 70), (110, 76, 40), (30, 30, 34))
_WHITE = (250, 250, 248)
_MOUTH_INSIDE = (62, 14, 24)
_TEETH = (244, 240, 232)
_TONGUE = (206, 92, 104)
_PINK = (236, 150, 160)


def _mix(a, b, t: float) -> tuple:
    """`a` moved a fraction `t` towards `b` (RGB tuples)."""
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))


def _shade(c, f: float) -> tuple:
    return tuple(int(min(255, max(0, round(x * f)))) for x in c)


def _jitter(c, rng: np.random.Generator, amount: int = 10) -> tuple:
    return tuple(int(min(255, max(0, x + rng.integers(-amount, amount + 1)))) for x in c)


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _choice(rng: np.random.Generator, weights: dict) -> str:
    keys = list(weights)
    p = np.asarray([weights[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _ellipse_points(cx, cy, rx, ry, angle_deg=0.0, n=28, start=0.0, stop=2 * math.pi) -> list:
    """Points of an ellipse (or of an arc of it, from angle `start` to `stop`), rotated by `angle_deg`."""
    ca, sa = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    points = []
    for t in np.linspace(start, stop, n, endpoint=stop - start < 2 * math.pi - 1e-6):
        x, y = rx * math.cos(t), ry * math.sin(t)
        points.append((cx + x * ca - y * sa, cy + x * sa + y * ca))
    return points


def _superellipse(a, b, n_bottom, cy=0.0, n=48) -> list:
    """A face outline: an ellipse on top, squarer (`n_bottom` > 2) or pointier (< 2) below."""
    points = []
    for k in range(n):
        t = 2 * math.pi * k / n
        c, s = math.cos(t), math.sin(t)
        e = 2.0 / (n_bottom if s > 0 else 2.0)
        points.append((a * math.copysign(abs(c) ** e, c), cy + b * math.copysign(abs(s) ** e, s)))
    return points


class _Pen:
    """Draws in head units (a head is 1 high, origin at its centre) on a supersampled canvas."""

    def __init__(self, image: Image.Image, scale: float, ox: float, oy: float):
        self.draw = ImageDraw.Draw(image)
        self.s, self.ox, self.oy = scale, ox, oy

    def _xy(self, points):
        return [(self.ox + x * self.s, self.oy + y * self.s) for x, y in points]

    def _w(self, width):
        return max(1, round(width * self.s))

    def ellipse(self, cx, cy, rx, ry, fill=None, outline=None, width=0.0):
        box = [self.ox + (cx - rx) * self.s, self.oy + (cy - ry) * self.s,
               self.ox + (cx + rx) * self.s, self.oy + (cy + ry) * self.s]
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            return
        self.draw.ellipse(box, fill=fill, outline=outline, width=self._w(width) if outline else 0)

    def rect(self, x0, y0, x1, y1, fill=None, radius=0.0, outline=None, width=0.0):
        box = [self.ox + x0 * self.s, self.oy + y0 * self.s, self.ox + x1 * self.s, self.oy + y1 * self.s]
        self.draw.rounded_rectangle(box, radius=radius * self.s, fill=fill, outline=outline,
                                    width=self._w(width) if outline else 0)

    def polygon(self, points, fill=None, outline=None, width=0.0):
        self.draw.polygon(self._xy(points), fill=fill, outline=outline, width=self._w(width) if outline else 0)

    def line(self, points, fill, width):
        self.draw.line(self._xy(points), fill=fill, width=self._w(width), joint="curve")


# ----------------------------------------------------------------------------------------------------------------
# Looks: everything drawn about one character, sampled once per clip
# ----------------------------------------------------------------------------------------------------------------


def _sample_expression(look, rng: np.random.Generator) -> None:
    """Eyebrows, eyelids, eye shape and resting mouth of the character's emotion, each jittered."""
    j = lambda lo, hi: float(rng.uniform(lo, hi))
    emotion = look.emotion
    look.eye_scale = (1.0, 1.0)
    look.pupil_scale = 1.0
    look.crescent = False
    look.lower_lid = 0.0
    look.mouth_o = False
    look.brow_gap = j(0.045, 0.07)
    if emotion == "neutral":
        look.brow_in, look.brow_out, look.brow_arch = j(-0.01, 0.01), j(-0.01, 0.01), j(0.0, 0.015)
        look.lid_in = look.lid_out = j(0.05, 0.2)
        look.curve = j(-0.006, 0.008)
    elif emotion == "happy":
        look.brow_in, look.brow_out, look.brow_arch = j(-0.03, -0.01), j(-0.01, 0.01), j(0.02, 0.04)
        look.lid_in = look.lid_out = j(0.0, 0.15)
        look.lower_lid = j(0.3, 0.45)
        look.crescent = bool(rng.random() < 0.35)
        look.curve = j(0.055, 0.085)
    elif emotion == "sad":
        look.brow_in, look.brow_out, look.brow_arch = j(-0.075, -0.05), j(0.01, 0.03), j(-0.01, 0.0)
        look.lid_in, look.lid_out = j(0.0, 0.15), j(0.45, 0.65)
        look.curve = -j(0.04, 0.065)
    elif emotion == "angry":
        look.brow_in, look.brow_out, look.brow_arch = j(0.04, 0.06), j(-0.045, -0.025), j(-0.005, 0.005)
        look.lid_in, look.lid_out = j(0.45, 0.65), j(0.1, 0.25)
        look.curve = -j(0.015, 0.03)
        look.brow_gap -= 0.01
    else:  # surprised
        look.brow_in, look.brow_out, look.brow_arch = j(-0.08, -0.06), j(-0.07, -0.045), j(0.03, 0.05)
        look.lid_in = look.lid_out = 0.0
        look.eye_scale = (j(1.05, 1.15), j(1.35, 1.6))
        look.pupil_scale = j(0.5, 0.65)
        look.mouth_o = True
        look.curve = 0.0
    if look.age == "elderly":
        look.lid_in = min(0.8, look.lid_in + 0.25)
        look.lid_out = min(0.8, look.lid_out + 0.25)
    look.blush = bool(rng.random() < {"happy": 0.7}.get(emotion, 0.25 if look.age == "child" else 0.08))
    look.tear = emotion == "sad" and bool(rng.random() < 0.45)
    look.frown_lines = emotion == "angry" and bool(rng.random() < 0.6)
    look.red_tint = float(rng.uniform(0.16, 0.3)) if emotion == "angry" else 0.0


def _clothes_colour(gender: str, age: str, rng: np.random.Generator) -> tuple:
    """A colour from the gender's family most of the time (a weak cue), muted for the elderly, bright for children."""
    own, other = (_FEMALE_CLOTHES, _MALE_CLOTHES) if gender == "female" else (_MALE_CLOTHES, _FEMALE_CLOTHES)
    colour = _jitter(_pick(rng, own if rng.random() < 0.75 else other), rng, 14)
    if age == "elderly":
        colour = _mix(colour, (128, 124, 118), 0.4)
    elif age == "adult":
        colour = _shade(colour, 0.82)
    elif age == "child":
        colour = _mix(colour, (255, 230, 120), 0.12)
    return colour


def _sample_person(character, rng: np.random.Generator):
    """The look of a person: sizes by age, face, hair, expression, clothes and accessories."""
    look = SimpleNamespace(species=PERSON, gender=character.gender, age=character.age, emotion=character.emotion)
    male, age = character.gender == "male", character.age
    u = rng.uniform
    # Head height as a fraction of the frame height, and where the top of the head sits.
    look.size = {"child": 0.27, "young": 0.3, "adult": 0.32, "elderly": 0.31}[age] * u(0.93, 1.07)
    look.top = u(*{"child": (0.38, 0.48), "young": (0.14, 0.22), "adult": (0.09, 0.17), "elderly": (0.17, 0.25)}[age])

    skin = _jitter(_pick(rng, _SKIN_TONES), rng, 8)
    look.fw = {"child": 0.9, "young": 0.78, "adult": 0.8, "elderly": 0.8}[age] + u(-0.03, 0.03)
    if male and age != "child":
        look.fw += 0.05
    look.jaw = {"child": 2.0, "young": 2.3 if male else 1.9, "adult": 2.7 if male else 1.95,
                "elderly": 2.5 if male else 2.0}[age] + u(-0.15, 0.15)
    ew, eh, ey = {"child": (0.2, 0.15, 0.07), "young": (0.16, 0.1, 0.0), "adult": (0.15, 0.09, -0.01),
                  "elderly": (0.14, 0.08, -0.01)}[age]
    look.eye_w, look.eye_h, look.eye_y = ew * u(0.92, 1.08), eh * u(0.92, 1.08), ey + u(-0.02, 0.02)
    look.eye_dx = look.fw * u(0.23, 0.26)
    look.iris = _jitter(_pick(rng, _IRIS), rng, 10)
    look.sclera = _WHITE
    look.slit = False
    look.mouth_y = {"child": 0.3, "young": 0.29, "adult": 0.3, "elderly": 0.31}[age] + u(-0.015, 0.015)
    look.mouth_hw = {"child": 0.12, "young": 0.13, "adult": 0.14, "elderly": 0.14}[age] * u(0.9, 1.1)
    look.max_open = 0.15 * u(0.9, 1.1)
    look.lash = (not male) and rng.random() < 0.95
    _sample_expression(look, np.random.default_rng(rng.integers(2**62)))

    face = skin  # the skin tone as the emotion colours it; `skin` stays the character's own
    if look.red_tint:
        face = _mix(face, (215, 50, 40), look.red_tint)
    if character.emotion == "sad":
        face = _mix(face, (150, 160, 200), 0.08)
    look.skin = face
    look.lid_colour = (face, face)
    look.line = _mix(face, (20, 6, 10), 0.72)  # dark enough to read on every skin tone
    look.mouth_inside = _MOUTH_INSIDE

    # Hair: style and length by gender and age, grey or white for the elderly.
    if male:
        styles = {"child": {"short": 0.4, "spiky": 0.2, "curly": 0.2, "side": 0.2},
                  "young": {"spiky": 0.3, "short": 0.3, "side": 0.2, "curly": 0.15, "long": 0.05},
                  "adult": {"short": 0.35, "side": 0.35, "crop": 0.15, "curly": 0.1, "long": 0.05},
                  "elderly": {"bald": 0.45, "side": 0.3, "short": 0.25}}[age]
    else:
        styles = {"child": {"pigtails": 0.35, "long": 0.3, "bob": 0.25, "ponytail": 0.1},
                  "young": {"long": 0.45, "ponytail": 0.3, "bob": 0.2, "short": 0.05},
                  "adult": {"long": 0.35, "bob": 0.3, "bun": 0.2, "ponytail": 0.15},
                  "elderly": {"bun": 0.4, "bob": 0.4, "curly": 0.2}}[age]
    look.hair_style = _choice(rng, styles)
    if age == "elderly":
        look.hair = _jitter(_pick(rng, _GREY_HAIR), rng, 6)
    elif age == "young" and rng.random() < 0.1:
        look.hair = _pick(rng, _DYED_HAIR if not male else _DYED_HAIR[::2])
    else:
        look.hair = _jitter(_pick(rng, _HAIR_COLOURS), rng, 8)
        if sum(abs(x - y) for x, y in zip(look.hair, skin)) < 120:  # hair must stand out from the face
            look.hair = (24, 22, 24) if sum(skin) > 420 else _jitter(_pick(rng, _HAIR_COLOURS[-2:]), rng, 8)
    look.fringe = _choice(rng, {"bangs": 0.35, "side": 0.3, "middle": 0.35} if not male or age == "child"
                          else {"high": 0.45, "side": 0.4, "bangs": 0.15})
    look.fringe_side = 1 if rng.random() < 0.5 else -1
    look.hair_len = u(0.9, 1.25) if look.hair_style == "long" else u(0.3, 0.45)
    look.brow = _shade(look.hair, 0.7) if sum(look.hair) > 330 and age != "elderly" else look.hair
    if age == "elderly" and male:
        look.brow = _mix(look.hair, (150, 150, 150), 0.3)
    look.brow_w = (0.05 if male else 0.03) * u(0.85, 1.15) * (1.2 if age == "elderly" and male else 1.0)

    look.glasses = rng.random() < {"child": 0.05, "young": 0.12, "adult": 0.25, "elderly": 0.6}[age]
    look.glasses_round = bool(rng.random() < 0.5)
    look.glasses_colour = _pick(rng, ((30, 30, 34), (110, 70, 40), (190, 160, 80), (150, 150, 160)))
    look.beard = None
    if male and age in ("adult", "elderly") and rng.random() < 0.45:
        look.beard = _choice(rng, {"full": 0.3, "moustache": 0.3, "goatee": 0.2, "stubble": 0.2})
    look.wrinkles = age == "elderly" or (age == "adult" and rng.random() < 0.3)
    look.freckles = age in ("child", "young") and rng.random() < 0.15
    look.lipstick = None
    if not male and age != "child" and rng.random() < {"young": 0.5, "adult": 0.6, "elderly": 0.3}[age]:
        look.lipstick = _jitter(_pick(rng, ((200, 40, 70), (220, 90, 120), (170, 40, 50), (230, 120, 140))), rng, 10)
    look.earrings = (not male) and age != "child" and rng.random() < 0.45
    look.earring_colour = _pick(rng, ((230, 190, 60), (210, 210, 220), (240, 120, 160)))
    look.nose = _choice(rng, {"line": 0.5, "dot": 0.25, "shadow": 0.25})

    # Body: shoulders broader for men and adults, a stoop for the elderly.
    look.sw = {"child": 0.62, "young": 0.92 if male else 0.8, "adult": 1.05 if male else 0.86,
               "elderly": 0.92 if male else 0.82}[age] * u(0.94, 1.06)
    look.neck_w = (0.3 if male else 0.25) * (0.9 if age == "child" else 1.0)
    look.shoulder_y = {"child": 0.66, "young": 0.72, "adult": 0.74, "elderly": 0.6}[age] + u(-0.03, 0.03)
    look.body_half = look.sw + 0.06
    look.clothes = _clothes_colour(character.gender, age, rng)
    look.clothes2 = _clothes_colour(character.gender, age, rng)
    look.neckline = _choice(rng, {
        "child": {"crew": 0.4, "overalls": 0.35, "vneck": 0.25},
        "young": {"crew": 0.3, "hoodie": 0.35, "vneck": 0.2, "scoop": 0.15 if not male else 0.0},
        "adult": ({"tie": 0.5, "collar": 0.3, "vneck": 0.2} if male else {"collar": 0.3, "scoop": 0.4, "vneck": 0.3}),
        "elderly": {"cardigan": 0.6, "collar": 0.25, "crew": 0.15},
    }[age])
    look.print_star = age == "child" and rng.random() < 0.5
    look.necklace = (not male) and age in ("adult", "elderly") and rng.random() < 0.4
    return look


def _sample_animal(character, rng: np.random.Generator):
    """The look of an animal: species shape, fur, sizes by age, expression, ears and accessories."""
    species = character.species
    look = SimpleNamespace(species=species, gender=character.gender, age=character.age, emotion=character.emotion)
    male, age = character.gender == "male", character.age
    u = rng.uniform
    look.size = {"child": 0.25, "young": 0.28, "adult": 0.31, "elderly": 0.29}[age] * u(0.93, 1.07)
    look.top = u(*{"child": (0.4, 0.5), "young": (0.2, 0.28), "adult": (0.14, 0.22), "elderly": (0.24, 0.32)}[age])
    if species == "rabbit":
        look.top += 0.12  # its ears stand above the head

    fur = _jitter(_pick(rng, _FUR[species]), rng, 10)
    dark_fur = sum(fur) < 250
    fur2 = _mix(fur, (250, 244, 232), 0.6) if not dark_fur else _mix(fur, (236, 228, 214), 0.75)
    if sum(fur) > 690:  # white fur: a pinkish-grey muzzle so that it still shows
        fur2 = (234, 222, 220)
    if age == "elderly":
        fur2 = _mix(fur2, (232, 232, 232), 0.6)  # a grey muzzle
    look.line = _shade(fur, 0.5) if not dark_fur else (20, 18, 20)
    look.mouth_inside = _MOUTH_INSIDE if not dark_fur else (150, 40, 60)  # a red inside reads on black fur
    look.brow = _shade(fur, 0.5) if not dark_fur else _mix(fur2, (255, 255, 255), 0.3)
    if age == "elderly":
        look.brow = (236, 236, 232)
    look.brow_w = (0.05 if male else 0.035) * u(0.85, 1.15)

    # Species layout (head units) and the age's proportions: children have big eyes in a round head.
    geometry = {  # a, b, eye_dx, eye_y, eye_w, eye_h, mouth_y, mouth_hw
        "cat": (0.55, 0.45, 0.22, -0.04, 0.22, 0.16, 0.245, 0.085),
        "dog": (0.47, 0.5, 0.2, -0.08, 0.18, 0.16, 0.28, 0.13),
        "rabbit": (0.44, 0.47, 0.19, -0.05, 0.18, 0.17, 0.22, 0.075),
        "bear": (0.54, 0.48, 0.2, -0.07, 0.15, 0.14, 0.27, 0.1),
    }[species]
    a, b, look.eye_dx, look.eye_y, ew, eh, look.mouth_y, look.mouth_hw = geometry
    grow = {"child": 1.25, "young": 1.05, "adult": 1.0, "elderly": 0.95}[age]
    look.head_a = a * (1.06 if age == "child" else 1.0) * u(0.95, 1.05)
    look.head_b = b
    look.eye_w, look.eye_h = ew * grow * u(0.92, 1.08), eh * grow * u(0.92, 1.08)
    look.mouth_hw *= u(0.9, 1.1)
    look.max_open = 0.15 * u(0.9, 1.1)
    look.slit = species == "cat"
    look.iris = _pick(rng, _CAT_IRIS) if species == "cat" else _jitter(_pick(rng, _IRIS[::4] + ((22, 20, 24),)), rng, 6)
    look.sclera = _WHITE
    look.lash = (not male) and rng.random() < 0.85
    _sample_expression(look, np.random.default_rng(rng.integers(2**62)))
    if look.red_tint:
        fur = _mix(fur, (215, 50, 40), look.red_tint)
        fur2 = _mix(fur2, (225, 70, 60), look.red_tint)
    look.skin, look.fur2 = fur, fur2
    look.lid_colour = (fur, fur)
    look.eye_patch = species == "dog" and rng.random() < 0.3
    if look.eye_patch:
        patch = _shade(fur, 0.6) if sum(fur) > 300 else _mix(fur, (255, 255, 255), 0.5)
        look.patch_colour = patch
        look.patch_side = 1 if rng.random() < 0.5 else -1
        look.lid_colour = (patch, fur) if look.patch_side < 0 else (fur, patch)
    look.tabby = species == "cat" and rng.random() < 0.5
    look.tuft = age == "child" and rng.random() < 0.5
    # Ears: perked when surprised, flattened when angry, drooping when sad.
    look.ear_angle = {"neutral": 0.0, "happy": -4.0, "sad": 40.0, "angry": 55.0, "surprised": -10.0}[character.emotion]
    look.ear_angle += float(u(-6, 6))
    if species == "rabbit" and character.emotion == "sad":
        look.ear_angle += 45.0
    look.inner_ear = _PINK if species in ("cat", "rabbit") else _shade(fur, 0.75)

    look.glasses = rng.random() < {"child": 0.0, "young": 0.08, "adult": 0.15, "elderly": 0.55}[age]
    look.glasses_round = bool(rng.random() < 0.7)
    look.glasses_colour = _pick(rng, ((30, 30, 34), (110, 70, 40), (190, 160, 80)))
    look.wrinkles = age == "elderly"
    look.moustache = male and age in ("adult", "elderly") and species in ("cat", "dog", "bear") and rng.random() < 0.35
    look.bow = None
    if not male:
        look.bow = _choice(rng, {"bow": 0.65, "flower": 0.2, "none": 0.15})
        look.bow_colour = _jitter(_pick(rng, _BOW_COLOURS), rng, 12)
        look.bow_side = _pick(rng, (-1, 1, 0))
    look.lipstick = None

    look.sw = {"child": 0.5, "young": 0.62, "adult": 0.74, "elderly": 0.68}[age] * u(0.94, 1.06)
    look.shoulder_y = {"child": 0.4, "young": 0.42, "adult": 0.42, "elderly": 0.32}[age]
    look.body_half = max(look.sw + 0.08, look.head_a + (0.2 if species == "dog" else 0.08))
    look.clothes = _clothes_colour(character.gender, age, rng)
    look.neckwear = _choice(rng, {
        "child": {"bib": 0.4, "collar": 0.3, "none": 0.3},
        "young": {"scarf": 0.45, "collar": 0.3, "bowtie": 0.15 if male else 0.0, "none": 0.1},
        "adult": ({"tie": 0.45, "bowtie": 0.3, "collar": 0.25} if male else
                  {"necklace": 0.45, "collar": 0.3, "scarf": 0.25}),
        "elderly": {"cardigan": 0.6, "bowtie": 0.2 if male else 0.0, "necklace": 0.0 if male else 0.2, "none": 0.2},
    }[age])
    return look


# ----------------------------------------------------------------------------------------------------------------
# Drawing: static parts of heads and bodies, then the face box that changes per frame
# ----------------------------------------------------------------------------------------------------------------


def _draw_brows(pen: _Pen, look) -> None:
    for side in (-1, 1):
        base = look.eye_y - look.eye_h * look.eye_scale[1] / 2 - look.brow_gap
        x_in, x_out = side * (look.eye_dx - look.eye_w * 0.5), side * (look.eye_dx + look.eye_w * 0.6)
        y_in, y_out = base + look.brow_in, base + look.brow_out
        points = []
        for t in np.linspace(0, 1, 6):
            points.append((x_in + (x_out - x_in) * t, y_in + (y_out - y_in) * t - look.brow_arch * 4 * t * (1 - t)))
        pen.line(points, look.brow, look.brow_w)
    if look.frown_lines:
        base = look.eye_y - look.eye_h / 2 - look.brow_gap + look.brow_in
        for x in (-0.035, 0.035):
            pen.line([(x, base - 0.01), (x * 0.7, base + 0.07)], look.line, 0.018)


def _draw_cheeks(pen: _Pen, look, y: float) -> None:
    if look.blush:
        blush = _mix(look.skin, (240, 90, 110), 0.4)
        for side in (-1, 1):
            pen.ellipse(side * (look.eye_dx + 0.03), y, 0.08, 0.045, fill=blush)
    if look.tear:
        side = 1 if look.eye_dx > 0 else -1
        x, y0 = side * (look.eye_dx + look.eye_w * 0.3), look.eye_y + look.eye_h * 0.6
        pen.polygon([(x, y0), (x - 0.025, y0 + 0.07), (x + 0.025, y0 + 0.07)], fill=(110, 180, 240))
        pen.ellipse(x, y0 + 0.075, 0.027, 0.027, fill=(110, 180, 240))


def _draw_person_back(pen: _Pen, look) -> None:
    """Hair that falls behind the neck and shoulders (drawn in the body layer, so that the neck covers it)."""
    a = look.fw / 2
    if look.hair_style in ("long", "bob"):
        w = a + 0.12
        pen.rect(-w, -0.5, w, look.hair_len, fill=look.hair, radius=min(0.3, (look.hair_len + 0.5) / 2))


def _draw_person_body(pen: _Pen, look, bottom: float) -> None:
    sy, sw, nw = look.shoulder_y, look.sw, look.neck_w
    neck = _shade(look.skin, 0.88)
    _draw_person_back(pen, look)
    pen.rect(-nw / 2, 0.2, nw / 2, sy + 0.2, fill=neck)
    if look.neckline == "hoodie":
        pen.ellipse(0, sy + 0.02, nw / 2 + 0.17, 0.13, fill=_shade(look.clothes, 0.8))
    # Rounder, higher shoulders read as a stoop.
    radius = 0.42 if look.age == "elderly" else 0.28
    pen.rect(-sw, sy, sw, bottom, fill=look.clothes, radius=radius)
    c, c2, dark = look.clothes, look.clothes2, _shade(look.clothes, 0.7)
    for side in (-1, 1):  # where the arms hang
        pen.line([(side * (sw - 0.2), sy + 0.32), (side * (sw - 0.17), bottom)], _shade(c, 0.8), 0.025)
    kind = look.neckline
    if kind == "crew" or kind == "hoodie":
        pen.ellipse(0, sy + 0.01, nw / 2 + 0.04, 0.085, fill=dark)
        pen.ellipse(0, sy - 0.005, nw / 2 + 0.005, 0.07, fill=neck)
        if kind == "hoodie":
            for x in (-0.07, 0.07):
                pen.line([(x, sy + 0.07), (x * 1.1, sy + 0.3)], (240, 240, 240), 0.02)
    elif kind == "vneck":
        pen.polygon([(-nw / 2 - 0.03, sy - 0.02), (nw / 2 + 0.03, sy - 0.02), (0, sy + 0.24)], fill=neck,
                    outline=dark, width=0.02)
    elif kind == "scoop":
        pen.ellipse(0, sy, nw / 2 + 0.14, 0.14, fill=neck)
    elif kind in ("tie", "collar", "cardigan"):
        shirt = (245, 245, 242) if kind != "cardigan" else _mix(c2, (240, 236, 226), 0.5)
        pen.polygon([(-0.24, sy - 0.02), (0.24, sy - 0.02), (0, sy + 0.5)], fill=shirt)
        pen.polygon([(-nw / 2 - 0.02, sy - 0.03), (0, sy + 0.1), (-nw / 2 - 0.07, sy + 0.12)], fill=(236, 236, 234),
                    outline=(180, 180, 180), width=0.012)
        pen.polygon([(nw / 2 + 0.02, sy - 0.03), (0, sy + 0.1), (nw / 2 + 0.07, sy + 0.12)], fill=(236, 236, 234),
                    outline=(180, 180, 180), width=0.012)
        if kind == "tie":
            pen.polygon([(-0.03, sy + 0.08), (0.03, sy + 0.08), (0.05, sy + 0.55), (0, sy + 0.62), (-0.05, sy + 0.55)],
                        fill=c2)
        if kind == "cardigan":
            for k in range(4):
                pen.ellipse(0.04, sy + 0.38 + 0.12 * k, 0.022, 0.022, fill=_shade(c, 0.6))
    elif kind == "overalls":
        pen.ellipse(0, sy + 0.01, nw / 2 + 0.04, 0.085, fill=dark)
        pen.ellipse(0, sy - 0.005, nw / 2 + 0.005, 0.07, fill=neck)
        pen.rect(-sw * 0.5, sy + 0.3, sw * 0.5, bottom, fill=c2)
        for side in (-1, 1):
            pen.line([(side * sw * 0.45, sy + 0.32), (side * sw * 0.55, sy)], c2, 0.07)
            pen.ellipse(side * sw * 0.35, sy + 0.36, 0.03, 0.03, fill=(240, 210, 80))
    if look.print_star:
        cx, cy, r = 0.0, sy + 0.36, 0.1
        points = [(cx + (r if k % 2 == 0 else r * 0.45) * math.sin(k * math.pi / 5),
                   cy - (r if k % 2 == 0 else r * 0.45) * math.cos(k * math.pi / 5)) for k in range(10)]
        pen.polygon(points, fill=(255, 230, 70) if sum(c) < 600 else (220, 60, 60))
    if look.necklace:
        for t in np.linspace(0.15, math.pi - 0.15, 11):
            pen.ellipse((nw / 2 + 0.08) * math.cos(t), sy + 0.03 + 0.12 * math.sin(t), 0.018, 0.018,
                        fill=(244, 240, 230))


def _fringe_boundary(look, x: float, cap_a: float) -> float:
    """Height of the hairline at `x` (the lower edge of the hair over the forehead)."""
    r = min(1.0, abs(x) / cap_a)
    kind = look.fringe
    if look.hair_style in ("crop", "bald"):
        return -0.42 + 0.34 * r**2
    if kind == "high" or look.hair_style == "spiky":
        return -0.34 + 0.27 * r**2
    if kind == "bangs":
        return -0.2 + 0.06 * r**4
    if kind == "middle":
        return -0.42 + 0.32 * r**0.7
    return -0.28 + 0.18 * r**2 + 0.1 * look.fringe_side * x / cap_a  # side-swept


def _draw_person_head(pen: _Pen, look) -> None:
    a, hair, skin = look.fw / 2, look.hair, look.skin
    cap_a, cap_b, cap_y = a + 0.045, 0.55, -0.05
    style = look.hair_style
    # 1. Behind the face: bun, ponytail, pigtails, the hair cap.
    if style == "bun":
        pen.ellipse(0, -0.6, 0.17, 0.14, fill=hair, outline=_shade(hair, 0.8), width=0.015)
    if style == "ponytail":
        side = look.fringe_side
        pen.polygon(_ellipse_points(side * (a + 0.08), 0.2, 0.1, 0.32, angle_deg=side * -12), fill=hair)
    if style == "pigtails":
        for side in (-1, 1):
            pen.polygon(_ellipse_points(side * (a + 0.1), 0.12, 0.11, 0.19, angle_deg=side * -20), fill=hair)
    if style != "bald":
        pen.ellipse(0, cap_y, cap_a, cap_b, fill=hair)
    # 2. Ears, face.
    ear_y = look.eye_y + 0.05
    for side in (-1, 1):
        pen.ellipse(side * a, ear_y, 0.065, 0.1, fill=_shade(skin, 0.92))
    pen.polygon(_superellipse(a, 0.5, look.jaw), fill=skin)
    # 3. Features drawn on the skin.
    _draw_cheeks(pen, look, look.mouth_y - 0.08)
    if look.freckles:
        for side in (-1, 1):
            for dx, dy in ((0.0, 0.0), (0.04, 0.02), (-0.03, 0.03), (0.02, -0.025)):
                pen.ellipse(side * (look.eye_dx + dx), look.mouth_y - 0.13 + dy, 0.01, 0.01, fill=_shade(skin, 0.75))
    nose_y = (look.eye_y + look.mouth_y) / 2 + 0.02
    if look.nose == "line":
        pen.line([(0.01, nose_y - 0.08), (-0.025, nose_y + 0.02), (0.015, nose_y + 0.03)], _shade(skin, 0.72), 0.018)
    elif look.nose == "dot":
        pen.ellipse(0, nose_y, 0.03, 0.022, fill=_shade(skin, 0.8))
    else:
        pen.ellipse(0, nose_y + 0.01, 0.05, 0.025, fill=_shade(skin, 0.87))
    if look.wrinkles:
        wrinkle = _shade(skin, 0.76)
        for side in (-1, 1):  # lines from the nose to the corners of the mouth
            pen.line([(side * 0.06, nose_y + 0.02), (side * (look.mouth_hw + 0.03), look.mouth_y + 0.03)], wrinkle,
                     0.014)
        if look.age == "elderly":
            for side in (-1, 1):  # crow's feet and bags
                x = side * (look.eye_dx + look.eye_w * 0.55)
                for dy in (-0.025, 0.0, 0.025):
                    pen.line([(x, look.eye_y + dy * 0.5), (x + side * 0.05, look.eye_y + dy * 1.6)], wrinkle, 0.012)
                pen.line(_ellipse_points(side * look.eye_dx, look.eye_y + look.eye_h * 0.55, look.eye_w * 0.4, 0.03,
                                         n=8, start=0.2, stop=math.pi - 0.2), wrinkle, 0.012)
            for k in range(3):  # forehead
                y = -0.36 + 0.05 * k
                pen.line(_ellipse_points(0, y + 0.03, 0.17, 0.03, n=9, start=math.pi + 0.3, stop=2 * math.pi - 0.3),
                         wrinkle, 0.012)
    if look.beard:
        beard = _shade(hair, 0.95) if look.age != "elderly" else hair
        my, hw = look.mouth_y, look.mouth_hw
        if look.beard in ("full", "stubble"):
            colour = beard if look.beard == "full" else _mix(skin, beard, 0.35)
            lower = [(x, y) for x, y in _superellipse(a, 0.5, look.jaw) if y > my - 0.12]
            lower.sort(key=lambda p: -p[0])  # right to left along the jaw
            pen.polygon([(a, my - 0.14)] + lower + [(-a, my - 0.14), (-hw - 0.06, my - 0.08), (hw + 0.06, my - 0.08)],
                        fill=colour)
            pen.ellipse(0, my + 0.01, hw + 0.025, 0.045, fill=skin)
        if look.beard == "goatee":
            pen.polygon([(-hw * 0.6, my + 0.06), (hw * 0.6, my + 0.06), (0.02, 0.52), (-0.02, 0.52)], fill=beard)
        if look.beard in ("full", "moustache", "goatee"):
            pen.polygon([(-hw - 0.03, my - 0.005), (-0.02, my - 0.085), (0.02, my - 0.085), (hw + 0.03, my - 0.005),
                         (0, my - 0.035)], fill=beard)
    # 4. Hair over the forehead.
    if style == "bald":
        pen.ellipse(-0.12, -0.36, 0.1, 0.05, fill=_mix(skin, (255, 255, 255), 0.35))
        for side in (-1, 1):
            pen.ellipse(side * (a - 0.01), -0.03, 0.065, 0.15, fill=hair)
    else:
        top = _ellipse_points(0, cap_y, cap_a, cap_b, n=24, start=math.pi, stop=2 * math.pi)
        top.append((cap_a, cap_y))
        xs = np.linspace(cap_a, -cap_a, 24)
        lower = [(x, max(_fringe_boundary(look, x, cap_a), cap_y - cap_b * math.sqrt(max(0.0, 1 - (x / cap_a) ** 2))))
                 for x in xs]
        pen.polygon(top + lower, fill=hair)
        strand = _shade(hair, 0.78) if sum(hair) > 150 else _mix(hair, (255, 255, 255), 0.2)
        for x in np.linspace(-0.6, 0.6, 5) * cap_a:  # strands, so that a cap of hair does not read as a hat
            y_top = cap_y - cap_b * math.sqrt(max(0.0, 1 - (x / cap_a) ** 2)) + 0.05
            y_end = max(_fringe_boundary(look, x * 1.15, cap_a) - 0.03, y_top + 0.04)
            pen.line([(x * 0.6, y_top), (x * 1.15, y_end)], strand, 0.014)
        if style == "spiky":
            for t in np.linspace(math.pi * 1.15, math.pi * 1.85, 6):
                x, y = cap_a * math.cos(t), cap_y + cap_b * math.sin(t)
                pen.polygon([(x - 0.07, y + 0.05), (x + 0.07, y + 0.05), (x * 1.25, y - 0.13)], fill=hair)
        if style == "curly":
            for t in np.linspace(math.pi * 0.95, math.pi * 2.05, 11):
                pen.ellipse(cap_a * math.cos(t), cap_y + cap_b * math.sin(t), 0.1, 0.1, fill=hair)
        if style in ("long", "bob"):
            for side in (-1, 1):  # locks over the sides of the face
                pen.polygon(_ellipse_points(side * (a - 0.02), 0.05, 0.075, 0.33 if style == "long" else 0.26,
                                            angle_deg=side * -4), fill=hair)
        if style == "pigtails":
            for side in (-1, 1):
                pen.ellipse(side * (a + 0.05), -0.06, 0.04, 0.04, fill=look.clothes2)
        if style == "ponytail":
            pen.ellipse(look.fringe_side * (a + 0.04), -0.05, 0.035, 0.035, fill=look.clothes2)
    _draw_brows(pen, look)
    # 5. Accessories outside the face box.
    if look.glasses:
        for side in (-1, 1):
            pen.line([(side * (look.eye_dx + look.eye_w * 0.75), look.eye_y - 0.02), (side * (a - 0.01), ear_y - 0.03)],
                     look.glasses_colour, 0.02)
    if look.earrings:
        for side in (-1, 1):
            pen.ellipse(side * a, ear_y + 0.11, 0.025, 0.025, fill=look.earring_colour)


def _draw_animal_ears(pen: _Pen, look) -> None:
    species, fur, inner = look.species, look.skin, look.inner_ear
    for side in (-1, 1):
        angle = side * look.ear_angle
        if species == "cat":
            base = (side * 0.33, -0.27)
            tri = [(side * 0.14, -0.36), (side * 0.52, -0.16), (side * 0.44, -0.8)]
            pivot_rot = _rotate(tri, base, angle)
            pen.polygon(pivot_rot, fill=fur)
            cx, cy = np.mean([p[0] for p in pivot_rot]), np.mean([p[1] for p in pivot_rot])
            pen.polygon([(cx + (x - cx) * 0.55, cy + (y - cy) * 0.55 + 0.02) for x, y in pivot_rot], fill=inner)
        elif species == "rabbit":
            base = (side * 0.15, -0.36)
            length = 0.44 if look.emotion != "surprised" else 0.5
            centre = _rotate([(base[0], base[1] - length)], base, angle)[0]
            pen.polygon(_ellipse_points(*centre, 0.1, length, angle_deg=angle), fill=fur)
            pen.polygon(_ellipse_points(*centre, 0.05, length * 0.78, angle_deg=angle), fill=inner)
        elif species == "dog":
            # Floppy ears hang by the cheeks, bottoms outwards: lifted when surprised, limp when sad.
            tilt = {"surprised": 55.0, "sad": 5.0, "angry": 32.0}.get(look.emotion, 18.0)
            drop = {"sad": 0.06, "surprised": -0.08}.get(look.emotion, 0.0)
            centre = (side * (look.head_a - 0.02), 0.02 + drop)
            pen.polygon(_ellipse_points(*centre, 0.14, 0.31, angle_deg=-side * tilt), fill=_shade(fur, 0.78))
        else:  # bear
            x, y = side * (look.head_a * 0.7), -0.38
            x, y = _rotate([(x, y)], (side * 0.2, -0.2), angle * 0.3)[0]
            pen.ellipse(x, y, 0.14, 0.14, fill=fur)
            pen.ellipse(x, y + 0.01, 0.075, 0.075, fill=inner)


def _rotate(points, pivot, angle_deg):
    ca, sa = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    px, py = pivot
    return [(px + (x - px) * ca - (y - py) * sa, py + (x - px) * sa + (y - py) * ca) for x, y in points]


def _draw_animal_head(pen: _Pen, look) -> None:
    species, fur, fur2 = look.species, look.skin, look.fur2
    a, b = look.head_a, look.head_b
    _draw_animal_ears(pen, look)
    # 1. Head shape (cats have cheek fluff, rabbits full cheeks).
    if species == "cat":
        for side in (-1, 1):
            pen.polygon([(side * (a - 0.1), 0.0), (side * (a + 0.09), 0.14), (side * (a - 0.02), 0.2),
                         (side * (a + 0.05), 0.28), (side * (a - 0.15), 0.34)], fill=fur)
    pen.polygon(_superellipse(a, b, 2.4 if species == "rabbit" else 2.1), fill=fur)
    if look.tabby:
        stripe = _shade(fur, 0.7) if sum(fur) > 250 else _mix(fur, (255, 255, 255), 0.3)
        for x in (-0.09, 0.0, 0.09):
            pen.line([(x, -b + 0.05), (x * 0.7, -b + 0.2)], stripe, 0.035)
    if look.eye_patch:
        pen.ellipse(look.patch_side * look.eye_dx, look.eye_y, look.eye_w * 0.95, look.eye_h * 1.15,
                    fill=look.patch_colour)
    if look.tuft:
        for dx in (-0.05, 0.0, 0.05):
            pen.line([(dx, -b + 0.03), (dx * 2.2, -b - 0.1)], fur, 0.04)
    if look.wrinkles:
        for k in range(3):
            y = -b + 0.16 + 0.05 * k
            pen.line(_ellipse_points(0, y + 0.03, 0.14, 0.03, n=9, start=math.pi + 0.3, stop=2 * math.pi - 0.3),
                     _shade(fur, 0.72), 0.014)
    # 2. Muzzle, nose, whiskers.
    my = look.mouth_y
    if species == "cat":
        for side in (-1, 1):
            pen.ellipse(side * 0.065, my - 0.07, 0.08, 0.07, fill=fur2)
        pen.polygon([(-0.04, my - 0.15), (0.04, my - 0.15), (0, my - 0.1)], fill=(230, 130, 150))
    elif species == "dog":
        pen.ellipse(0, my - 0.07, 0.25, 0.19, fill=fur2)
        pen.ellipse(0, my - 0.17, 0.09, 0.065, fill=(26, 24, 26))
        pen.ellipse(-0.03, my - 0.19, 0.025, 0.015, fill=(120, 120, 130))
        pen.line([(0, my - 0.12), (0, my - 0.01)], (60, 50, 50), 0.015)
    elif species == "rabbit":
        for side in (-1, 1):
            pen.ellipse(side * 0.06, my - 0.04, 0.075, 0.065, fill=fur2)
        pen.polygon([(-0.035, my - 0.12), (0.035, my - 0.12), (0, my - 0.08)], fill=(232, 130, 150))
    else:  # bear
        pen.ellipse(0, my - 0.07, 0.22, 0.16, fill=fur2)
        pen.ellipse(0, my - 0.15, 0.08, 0.055, fill=(26, 24, 26))
    if species in ("cat", "rabbit"):
        whisker = (60, 56, 56) if sum(fur2) > 400 else (230, 230, 230)
        for side in (-1, 1):
            for dy in (-0.03, 0.0, 0.03):
                pen.line([(side * 0.13, my - 0.07 + dy * 0.4), (side * 0.42, my - 0.09 + dy * 1.8)], whisker, 0.01)
    if look.moustache:
        colour = _shade(fur, 0.6) if look.age != "elderly" else (236, 236, 232)
        pen.polygon([(-look.mouth_hw - 0.06, my + 0.01), (-0.02, my - 0.07), (0.02, my - 0.07),
                     (look.mouth_hw + 0.06, my + 0.01), (0, my - 0.03)], fill=colour)
    _draw_cheeks(pen, look, my - 0.09)
    _draw_brows(pen, look)
    # 3. Accessories on the head.
    if look.bow in ("bow", "flower"):
        side = look.bow_side
        x, y = (side * a * 0.55, -b * 0.85) if side else (0.0, -b * 0.98)
        if look.bow == "bow":
            pen.polygon([(x, y), (x - 0.16, y - 0.09), (x - 0.16, y + 0.09)], fill=look.bow_colour)
            pen.polygon([(x, y), (x + 0.16, y - 0.09), (x + 0.16, y + 0.09)], fill=look.bow_colour)
            pen.ellipse(x, y, 0.04, 0.04, fill=_shade(look.bow_colour, 0.8))
        else:
            for k in range(5):
                t = 2 * math.pi * k / 5
                pen.ellipse(x + 0.06 * math.cos(t), y + 0.06 * math.sin(t), 0.05, 0.05, fill=look.bow_colour)
            pen.ellipse(x, y, 0.04, 0.04, fill=(250, 220, 80))


def _draw_animal_body(pen: _Pen, look, bottom: float) -> None:
    sy, sw, fur = look.shoulder_y, look.sw, look.skin
    kind = look.neckwear
    pen.rect(-sw, sy, sw, bottom, fill=fur, radius=0.35)
    pen.ellipse(0, sy + 0.55, sw * 0.55, 0.42, fill=look.fur2)
    for side in (-1, 1):  # front legs, folded
        pen.ellipse(side * (sw - 0.1), sy + 0.55, 0.11, 0.28, fill=_shade(fur, 0.92))
    c = look.clothes
    if kind == "cardigan":
        for side in (-1, 1):
            pen.polygon([(side * 0.1, sy + 0.05), (side * sw, sy + 0.15), (side * sw, bottom), (side * 0.14, bottom)],
                        fill=c)
        for k in range(3):
            pen.ellipse(0.17, sy + 0.3 + 0.14 * k, 0.025, 0.025, fill=_shade(c, 0.6))
    elif kind == "bib":
        pen.ellipse(0, sy + 0.22, 0.24, 0.2, fill=_mix(c, (255, 255, 255), 0.5), outline=c, width=0.025)
    elif kind == "scarf":
        pen.rect(-sw * 0.85, sy + 0.0, sw * 0.85, sy + 0.12, fill=c, radius=0.05)
        pen.rect(0.06, sy + 0.05, 0.2, sy + 0.45, fill=_shade(c, 0.85), radius=0.03)
    elif kind in ("collar", "tie", "bowtie", "necklace"):
        band = c if kind != "necklace" else None
        if band:
            pen.rect(-0.3, sy + 0.02, 0.3, sy + 0.08, fill=band, radius=0.03)
        if kind == "collar":
            pen.ellipse(0, sy + 0.13, 0.045, 0.045, fill=(240, 200, 60))
        elif kind == "tie":
            pen.polygon([(-0.03, sy + 0.08), (0.03, sy + 0.08), (0.05, sy + 0.5), (0, sy + 0.57), (-0.05, sy + 0.5)],
                        fill=_shade(c, 0.75))
        elif kind == "bowtie":
            dark = _shade(c, 0.75)
            pen.polygon([(0, sy + 0.08), (-0.14, sy + 0.01), (-0.14, sy + 0.15)], fill=dark)
            pen.polygon([(0, sy + 0.08), (0.14, sy + 0.01), (0.14, sy + 0.15)], fill=dark)
        else:
            for t in np.linspace(0.2, math.pi - 0.2, 11):
                pen.ellipse(0.28 * math.cos(t), sy + 0.02 + 0.12 * math.sin(t), 0.022, 0.022, fill=(244, 240, 230))


def _draw_eye(pen: _Pen, look, side: int, state: int) -> None:
    """One eye; `state` 0 open, 1 half closed, 2 closed (a blink)."""
    sx, sy = look.eye_scale
    cx, cy = side * look.eye_dx, look.eye_y
    w, h = look.eye_w / 2 * sx, look.eye_h / 2 * sy
    lid = look.lid_colour[0 if side < 0 else 1]
    line_w = max(0.018, 0.7 / pen.s * SUPERSAMPLE)
    if state == 2 or look.crescent:
        # Closed: a lid line. Happy "crescent" eyes are arcs curving up.
        start, stop = (math.pi + 0.3, 2 * math.pi - 0.3) if look.crescent and state != 2 else (0.3, math.pi - 0.3)
        dy = h * 0.3 if look.crescent and state != 2 else -h * 0.2
        pen.line(_ellipse_points(cx, cy + dy, w, h * 0.7, n=10, start=start, stop=stop), look.line, line_w * 1.3)
        if look.lash:
            pen.line([(cx + side * w * 0.9, cy), (cx + side * (w + 0.05), cy - 0.03)], look.line, line_w)
        return
    pen.ellipse(cx, cy, w, h, fill=look.sclera)
    r = min(h * 0.95, w * 0.6) * look.pupil_scale
    gaze = -side * w * 0.08
    if look.slit:
        pen.ellipse(cx + gaze, cy, r * 1.1, r * 1.1, fill=look.iris)
        pen.ellipse(cx + gaze, cy, r * 0.3, r, fill=(16, 16, 18))
    else:
        pen.ellipse(cx + gaze, cy, r, r, fill=look.iris)
        pen.ellipse(cx + gaze, cy, r * 0.55, r * 0.55, fill=(16, 16, 18))
    pen.ellipse(cx + gaze - r * 0.35, cy - r * 0.35, r * 0.28, r * 0.28, fill=(255, 255, 255))
    pen.ellipse(cx, cy, w, h, outline=look.line, width=line_w * 0.8)
    # Lids: sad droops at the outer corner, angry lowers the inner corner, a blink halves the eye.
    cover_in = max(look.lid_in, 0.5 if state == 1 else 0.0)
    cover_out = max(look.lid_out, 0.5 if state == 1 else 0.0)
    x_in, x_out = cx - side * (w + 0.02), cx + side * (w + 0.02)
    y_in, y_out = cy - h + 2 * h * cover_in, cy - h + 2 * h * cover_out
    if cover_in > 0.02 or cover_out > 0.02:
        pen.polygon([(x_in, cy - h - 0.03), (x_out, cy - h - 0.03), (x_out, y_out), (x_in, y_in)], fill=lid)
        pen.line([(x_in + side * 0.02, y_in), (x_out - side * 0.02, y_out)], look.line, line_w * 1.2)
    else:
        pen.line(_ellipse_points(cx, cy, w, h, n=10, start=math.pi + 0.2, stop=2 * math.pi - 0.2), look.line,
                 line_w * 1.2)
    if look.lower_lid:
        top = cy + h - 2 * h * look.lower_lid
        arc = _ellipse_points(cx, top + h, w + 0.02, h, n=12, start=math.pi, stop=2 * math.pi)
        pen.polygon(arc + [(cx + w + 0.02, cy + h + 0.03), (cx - w - 0.02, cy + h + 0.03)], fill=lid)
    if look.lash:
        y = min(y_out, cy - h * 0.6)
        for k in range(2):
            pen.line([(x_out - side * 0.02 * (1 + k), y + 0.005), (x_out + side * 0.04, y - 0.04 - 0.015 * k)],
                     look.line, line_w)


def _draw_mouth(pen: _Pen, look, openness: float) -> None:
    """The mouth, opened by `openness` in [0, 1]: 0 is a closed line, curved by the emotion."""
    cy, hw, curve = look.mouth_y, look.mouth_hw * (0.62 if look.mouth_o else 1.0), look.curve
    lip = look.lipstick or look.line
    lip_w = max(0.03, 1.0 / pen.s * SUPERSAMPLE) * (1.3 if look.lipstick else 1.0)
    opening = look.max_open * openness
    xs = np.linspace(-1.0, 1.0, 15)
    base = cy - curve * (xs**2 - 1.0 / 3.0)  # corners lifted by `curve` above the middle (a smile when > 0)
    if opening * pen.s < 1.5:
        if look.mouth_o:  # surprised at rest: small closed lips, rounded
            pen.ellipse(0, cy, hw, hw * 0.6, fill=_mix(look.skin, lip, 0.45), outline=lip, width=lip_w * 0.8)
        else:
            pen.line(list(zip(xs * hw, base)), lip, lip_w)
        return
    profile = np.sqrt(1 - xs**2) if look.mouth_o else (1 - xs**2) ** 0.6
    upper, lower = base - 0.3 * opening * profile, base + 0.7 * opening * profile
    pen.polygon(list(zip(xs * hw, upper)) + list(zip(xs[::-1] * hw, lower[::-1])), fill=look.mouth_inside)
    teeth = min(0.3 * opening, 0.035)
    inner = xs[2:-2]
    top = upper[2:-2]
    pen.polygon(list(zip(inner * hw, top)) + list(zip(inner[::-1] * hw, (top + teeth * profile[2:-2])[::-1])),
                fill=_TEETH)
    if openness > 0.45:
        pen.ellipse(0, cy + curve / 3 + 0.45 * opening, hw * 0.42, 0.18 * opening, fill=_TONGUE)
    pen.line(list(zip(xs * hw, upper)) + list(zip(xs[::-1] * hw, lower[::-1])) + [(-hw, base[0])], lip, lip_w)


def _draw_face(pen: _Pen, look, openness: float, eye_state: int) -> None:
    """Everything in the face box: what changes from frame to frame (eyes, mouth) and what is drawn over it."""
    for side in (-1, 1):
        _draw_eye(pen, look, side, eye_state)
    if look.glasses:
        r_w, r_h = look.eye_w * 0.75, look.eye_h * 1.15 + 0.03
        for side in (-1, 1):
            cx = side * look.eye_dx
            if look.glasses_round:
                pen.ellipse(cx, look.eye_y, r_w, max(r_h, r_w * 0.85), outline=look.glasses_colour, width=0.022)
            else:
                pen.rect(cx - r_w, look.eye_y - r_h, cx + r_w, look.eye_y + r_h, radius=0.03,
                         outline=look.glasses_colour, width=0.022)
        pen.line([(-look.eye_dx + look.eye_w * 0.75, look.eye_y - 0.01), (look.eye_dx - look.eye_w * 0.75,
                                                                          look.eye_y - 0.01)],
                 look.glasses_colour, 0.02)
    _draw_mouth(pen, look, openness)
    if look.species == "rabbit":  # buck teeth, under the upper lip whatever the opening
        top = look.mouth_y - look.curve * (-1.0 / 3.0) - 0.3 * look.max_open * openness
        for x in (-0.023, 0.023):
            pen.rect(x - 0.02, top, x + 0.02, top + 0.07, fill=_TEETH, outline=(150, 150, 150), width=0.008)


class _Actor:
    """One visible character: its sprites, its place on the canvas and its per-frame head variants."""

    def __init__(self, look, u: float, hx: int, hy: int, canvas_h: int):
        self.look, self.u, self.hx, self.hy = look, u, hx, hy
        person = look.species == PERSON
        ext_x = 0.95 if person else 1.0
        ext_top = 0.8 if person else (1.45 if look.species == "rabbit" else 1.0)
        ext_bottom = 0.62
        # Head sprite (with the head centre at an integer pixel so that face boxes align with the supersampling).
        self.ox, self.oy = math.ceil(ext_x * u), math.ceil(ext_top * u)
        w, h = 2 * self.ox, self.oy + math.ceil(ext_bottom * u)
        self.hi = Image.new("RGBA", (w * SUPERSAMPLE, h * SUPERSAMPLE), (0, 0, 0, 0))
        pen = _Pen(self.hi, SUPERSAMPLE * u, self.ox * SUPERSAMPLE, self.oy * SUPERSAMPLE)
        (_draw_person_head if person else _draw_animal_head)(pen, look)
        self.small = self.hi.reduce(SUPERSAMPLE)
        # The face box: eyes (wide when surprised), glasses, mouth fully open, rabbit teeth.
        half_w = look.eye_dx + look.eye_w * 0.8 + 0.06
        top = look.eye_y - look.eye_h * look.eye_scale[1] / 2 - (0.1 if look.glasses else 0.05)
        bottom = look.mouth_y + abs(look.curve) + look.max_open * 0.75 + (0.12 if look.species == "rabbit" else 0.05)
        self.box = (max(0, math.floor(self.ox - half_w * u)), max(0, math.floor(self.oy + top * u)),
                    min(w, math.ceil(self.ox + half_w * u)), min(h, math.ceil(self.oy + bottom * u)))
        self.variants = {}
        # Body sprite, down to the bottom of the canvas.
        self.body_top = -0.62 if person else 0.25
        bottom_units = (canvas_h - hy) / u + 0.1
        self.bx, self.by = math.ceil((look.body_half + 0.05) * u), math.ceil(-self.body_top * u)
        bw, bh = 2 * self.bx, self.by + math.ceil(bottom_units * u)
        body = Image.new("RGBA", (bw * SUPERSAMPLE, bh * SUPERSAMPLE), (0, 0, 0, 0))
        pen = _Pen(body, SUPERSAMPLE * u, self.bx * SUPERSAMPLE, self.by * SUPERSAMPLE)
        (_draw_person_body if person else _draw_animal_body)(pen, look, bottom_units)
        self.body = body.reduce(SUPERSAMPLE)

    def variant(self, level: int, eye_state: int) -> Image.Image:
        key = (level, eye_state)
        if key not in self.variants:
            x0, y0, x1, y1 = self.box
            crop = self.hi.crop((x0 * SUPERSAMPLE, y0 * SUPERSAMPLE, x1 * SUPERSAMPLE, y1 * SUPERSAMPLE))
            pen = _Pen(crop, SUPERSAMPLE * self.u, (self.ox - x0) * SUPERSAMPLE, (self.oy - y0) * SUPERSAMPLE)
            _draw_face(pen, self.look, level / (MOUTH_LEVELS - 1), eye_state)
            image = self.small.copy()
            image.paste(crop.reduce(SUPERSAMPLE), (x0, y0))
            self.variants[key] = image
        return self.variants[key]

    def head_bbox(self, dy: int) -> tuple:
        x0, y0, x1, y1 = self.small.getchannel("A").getbbox()
        return (self.hx - self.ox + x0, self.hy - self.oy + y0 + dy, self.hx - self.ox + x1, self.hy - self.oy + y1 + dy)

    def body_bbox(self) -> tuple:
        x0, y0, x1, y1 = self.body.getchannel("A").getbbox()
        return (self.hx - self.bx + x0, self.hy - self.by + y0, self.hx - self.bx + x1, self.hy - self.by + y1)

    def mouth_bbox(self, dy: int) -> tuple:
        look = self.look
        hw = look.mouth_hw + 0.03
        top = look.mouth_y - max(0.0, look.curve) * 2 / 3 - 0.3 * look.max_open - 0.03
        bottom = look.mouth_y + max(0.0, -look.curve) * 2 / 3 + abs(look.curve) / 3 + 0.7 * look.max_open + 0.03
        return (self.hx - hw * self.u, self.hy + dy + top * self.u, self.hx + hw * self.u,
                self.hy + dy + bottom * self.u)


# ----------------------------------------------------------------------------------------------------------------
# Scene: background, camera, lighting
# ----------------------------------------------------------------------------------------------------------------


def _gradient(w: int, h: int, top, bottom, angle: float = 0.0) -> np.ndarray:
    """A linear gradient from colour `top` to `bottom`, tilted by `angle` radians."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (yy / max(1, h - 1)) * math.cos(angle) + (xx / max(1, w - 1)) * math.sin(angle)
    t = (t - t.min()) / max(1e-6, t.max() - t.min())
    top, bottom = np.asarray(top, np.float32), np.asarray(bottom, np.float32)
    return (top + (bottom - top) * t[..., None]).astype(np.uint8)


def _random_colour(rng: np.random.Generator, lo: int = 40, hi: int = 230) -> tuple:
    return tuple(int(x) for x in rng.integers(lo, hi, size=3))


def _draw_background(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    """A random backdrop: gradient, room, outdoor scene, texture or bokeh."""
    kind = _choice(rng, {"gradient": 0.15, "room": 0.3, "outdoor": 0.3, "texture": 0.15, "bokeh": 0.1})
    s = 2  # drawn at twice the size, then halved: cheap anti-aliasing
    W, H = w * s, h * s
    if kind == "gradient":
        c0 = _random_colour(rng)
        image = Image.fromarray(_gradient(W, H, c0, _mix(c0, _random_colour(rng), 0.6), rng.uniform(-0.8, 0.8)))
        draw = ImageDraw.Draw(image)
    elif kind == "room":
        wall = _random_colour(rng, 90, 235)
        image = Image.fromarray(_gradient(W, H, wall, _shade(wall, rng.uniform(0.7, 0.95)), rng.uniform(-0.4, 0.4)))
        draw = ImageDraw.Draw(image)
        floor_y = int(H * rng.uniform(0.62, 0.82))
        floor = _random_colour(rng, 50, 180)
        draw.rectangle([0, floor_y, W, H], fill=floor)
        for k in range(int(rng.integers(0, 6))):
            y = floor_y + (k + 1) * (H - floor_y) // 6
            draw.line([0, y, W, y], fill=_shade(floor, 0.85), width=s)
        draw.rectangle([0, floor_y - 2 * s, W, floor_y], fill=_shade(wall, 0.6))
        for _ in range(int(rng.integers(1, 4))):
            prop = _choice(rng, {"window": 0.35, "picture": 0.3, "door": 0.15, "shelf": 0.2})
            x0 = int(rng.uniform(0, 0.8) * W)
            if prop == "window":
                pw, ph = int(W * rng.uniform(0.15, 0.3)), int(floor_y * rng.uniform(0.35, 0.6))
                y0 = int(floor_y * rng.uniform(0.08, 0.3))
                sky = Image.fromarray(_gradient(pw, ph, (120, 170, 230), (200, 225, 250)))
                image.paste(sky, (x0, y0))
                frame = _random_colour(rng, 150, 250)
                draw.rectangle([x0, y0, x0 + pw, y0 + ph], outline=frame, width=3 * s)
                draw.line([x0 + pw // 2, y0, x0 + pw // 2, y0 + ph], fill=frame, width=2 * s)
                draw.line([x0, y0 + ph // 2, x0 + pw, y0 + ph // 2], fill=frame, width=2 * s)
            elif prop == "picture":
                pw, ph = int(W * rng.uniform(0.1, 0.2)), int(H * rng.uniform(0.1, 0.2))
                y0 = int(floor_y * rng.uniform(0.1, 0.4))
                draw.rectangle([x0, y0, x0 + pw, y0 + ph], fill=_random_colour(rng), outline=_random_colour(rng, 20, 120),
                               width=2 * s)
                draw.ellipse([x0 + pw // 4, y0 + ph // 4, x0 + 3 * pw // 4, y0 + 3 * ph // 4], fill=_random_colour(rng))
            elif prop == "door":
                pw = int(W * rng.uniform(0.14, 0.22))
                y0 = int(floor_y * rng.uniform(0.15, 0.3))
                colour = _random_colour(rng, 60, 200)
                draw.rectangle([x0, y0, x0 + pw, floor_y], fill=colour, outline=_shade(colour, 0.7), width=s)
                draw.ellipse([x0 + pw - 5 * s, (y0 + floor_y) // 2, x0 + pw - 2 * s, (y0 + floor_y) // 2 + 3 * s],
                             fill=(230, 200, 90))
            else:
                y0 = int(floor_y * rng.uniform(0.2, 0.5))
                pw = int(W * rng.uniform(0.15, 0.3))
                draw.rectangle([x0, y0, x0 + pw, y0 + 2 * s], fill=_random_colour(rng, 60, 160))
                x = x0
                while x < x0 + pw - 3 * s:
                    bw = int(rng.integers(2, 5)) * s
                    bh = int(rng.integers(5, 10)) * s
                    draw.rectangle([x, y0 - bh, x + bw, y0], fill=_random_colour(rng))
                    x += bw + s
    elif kind == "outdoor":
        time = _choice(rng, {"day": 0.6, "sunset": 0.25, "night": 0.15})
        sky_top, sky_bottom = {"day": ((70, 130, 220), (180, 215, 245)), "sunset": ((90, 70, 150), (250, 160, 100)),
                               "night": ((10, 15, 45), (40, 50, 100))}[time]
        image = Image.fromarray(_gradient(W, H, _jitter(sky_top, rng, 15), _jitter(sky_bottom, rng, 15)))
        draw = ImageDraw.Draw(image)
        ground_y = int(H * rng.uniform(0.55, 0.8))
        if time == "night":
            for _ in range(20):
                x, y = int(rng.integers(0, W)), int(rng.integers(0, ground_y))
                draw.ellipse([x, y, x + s, y + s], fill=(240, 240, 220))
        x, y, r = int(rng.uniform(0.05, 0.95) * W), int(rng.uniform(0.05, 0.3) * H), int(rng.uniform(0.04, 0.08) * W)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(255, 240, 160) if time != "night" else (235, 235, 220))
        if time == "day":
            for _ in range(int(rng.integers(0, 4))):
                x, y = int(rng.uniform(0, W)), int(rng.uniform(0.05, 0.35) * H)
                for k in range(3):
                    r = int(W * rng.uniform(0.03, 0.06))
                    draw.ellipse([x + k * r - r, y - r, x + k * r + r, y + r // 2], fill=(250, 250, 252))
        ground = _jitter(_pick(rng, ((90, 150, 70), (200, 180, 130), (235, 238, 242), (110, 120, 100))), rng, 15)
        if time != "day":
            ground = _shade(ground, 0.55)
        if rng.random() < 0.5:  # hills
            for _ in range(int(rng.integers(1, 4))):
                x, r = int(rng.uniform(0, W)), int(W * rng.uniform(0.2, 0.5))
                draw.ellipse([x - r, ground_y - r // 3, x + r, ground_y + r], fill=_shade(ground, rng.uniform(0.75, 1.0)))
        else:  # a city skyline
            x = 0
            while x < W:
                bw, bh = int(W * rng.uniform(0.06, 0.16)), int(ground_y * rng.uniform(0.2, 0.7))
                colour = _shade(_random_colour(rng, 80, 170), 0.6 if time == "night" else 1.0)
                draw.rectangle([x, ground_y - bh, x + bw, ground_y], fill=colour)
                lit = (250, 230, 140) if time == "night" else _shade(colour, 1.25)
                for wy in range(ground_y - bh + 3 * s, ground_y - 3 * s, 5 * s):
                    for wx in range(x + 2 * s, x + bw - 3 * s, 5 * s):
                        draw.rectangle([wx, wy, wx + 2 * s, wy + 2 * s], fill=lit)
                x += bw
        draw.rectangle([0, ground_y, W, H], fill=ground)
        for _ in range(int(rng.integers(0, 4))):
            x, th = int(rng.uniform(0, W)), int(H * rng.uniform(0.15, 0.3))
            draw.rectangle([x - 2 * s, ground_y - th, x + 2 * s, ground_y + 2 * s], fill=(100, 70, 40))
            green = _jitter((50, 120, 50), rng, 25)
            for dx, dy in ((0, -th), (-6 * s, -th + 6 * s), (6 * s, -th + 6 * s)):
                r = int(rng.integers(6, 11)) * s
                draw.ellipse([x + dx - r, ground_y + dy - r, x + dx + r, ground_y + dy + r], fill=green)
    elif kind == "texture":
        c0, c1 = _random_colour(rng), _random_colour(rng)
        c1 = _mix(c0, c1, rng.uniform(0.25, 0.6))  # keep the pattern soft
        image = Image.new("RGB", (W, H), c0)
        draw = ImageDraw.Draw(image)
        pattern = _choice(rng, {"stripes": 0.3, "dots": 0.25, "checker": 0.2, "bricks": 0.25})
        step = int(rng.integers(6, 16)) * s
        if pattern == "stripes":
            for x in range(0, W, 2 * step):
                draw.rectangle([x, 0, x + step - 1, H], fill=c1)
        elif pattern == "dots":
            for y in range(0, H, step):
                for x in range((y // step % 2) * step // 2, W, step):
                    draw.ellipse([x, y, x + step // 3, y + step // 3], fill=c1)
        elif pattern == "checker":
            for y in range(0, H, step):
                for x in range(0, W, step):
                    if (x // step + y // step) % 2:
                        draw.rectangle([x, y, x + step - 1, y + step - 1], fill=c1)
        else:
            for y in range(0, H, step // 2):
                offset = (y // (step // 2) % 2) * step // 2
                draw.line([0, y, W, y], fill=c1, width=s)
                for x in range(offset, W, step):
                    draw.line([x, y, x, y + step // 2], fill=c1, width=s)
    else:  # bokeh
        c0 = _shade(_random_colour(rng), 0.45)
        image = Image.fromarray(_gradient(W, H, c0, _shade(_random_colour(rng), 0.3)))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(10, 25))):
            x, y, r = int(rng.uniform(0, W)), int(rng.uniform(0, H)), int(rng.uniform(0.03, 0.09) * W)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=_mix(c0, _random_colour(rng, 120, 255), 0.6))
        image = image.filter(ImageFilter.GaussianBlur(4 * s))
    image = image.reduce(s)
    radius = float(rng.uniform(0.0, 1.3))  # a shallow depth of field: the backdrop is out of focus
    if radius > 0.3:
        image = image.filter(ImageFilter.GaussianBlur(radius))
    return image


def _camera_path(num_frames: int, margin: int, rng: np.random.Generator):
    """Per-frame zoom and offsets (pixels) of the crop: a slow pan or zoom, and a smooth hand-held shake."""
    t = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    mode = _choice(rng, {"static": 0.35, "pan": 0.3, "zoom": 0.2, "handheld": 0.15})
    zoom = np.ones(num_frames)
    dx = np.zeros(num_frames)
    dy = np.zeros(num_frames)
    if mode == "pan":
        span = min(rng.uniform(0.5, 2.0), 0.4 * margin)  # pixels each way: a slow drift, not a travelling shot
        dx += (t - 0.5) * 2 * span * (1 if rng.random() < 0.5 else -1)
        dy += (t - 0.5) * 2 * span * rng.uniform(-0.3, 0.3)
    elif mode == "zoom":
        z = rng.uniform(0.01, 0.035)
        zoom = 1 + z * (t if rng.random() < 0.5 else 1 - t)
    shake = rng.uniform(0.5, 1.0) if mode == "handheld" else rng.uniform(0.0, 0.3)
    seconds = np.arange(num_frames) / FPS
    for offsets in (dx, dy):
        for _ in range(2):
            offsets += shake / 2 * np.sin(2 * math.pi * rng.uniform(0.3, 2.0) * seconds + rng.uniform(0, 2 * math.pi))
    limit = margin - 1
    return zoom, np.clip(dx, -limit, limit), np.clip(dy, -limit, limit)


def _lighting(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A per-pixel, per-channel gain: brightness, colour cast, vignette and light from one side."""
    brightness = rng.uniform(0.78, 1.12)
    cast = 1.0 + rng.uniform(-0.07, 0.07, size=3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    xn, yn = (xx + 0.5) / width - 0.5, (yy + 0.5) / height - 0.5
    vignette = 1.0 - rng.uniform(0.0, 0.35) * (xn**2 + yn**2) * 2.0
    side = 1.0 + rng.uniform(-0.12, 0.12) * xn * 2.0
    gain = (brightness * vignette * side)[..., None] * cast[None, None, :]
    return gain.astype(np.float32)


def _check_inputs(plan: ScenePlan, mouth_openness: np.ndarray) -> np.ndarray:
    if not isinstance(plan, ScenePlan):
        raise TypeError(f"plan must be a ScenePlan, got {type(plan).__name__}.")
    if plan.num_frames < 1:
        raise ValueError(f"plan.duration_s={plan.duration_s} gives no frame at {FPS} fps; set a duration of at least "
                         f"{1 / FPS:.2f} s.")
    if plan.width < 32 or plan.height < 32:
        raise ValueError(f"plan frame size {plan.width}x{plan.height} is too small to draw characters; use at least "
                         "32x32 (the corpus uses 160x128 and larger).")
    for i, c in enumerate(plan.characters):
        if c.species != PERSON and c.species not in ANIMALS:
            raise ValueError(f"plan.characters[{i}].species={c.species!r}; use {PERSON!r} or one of {ANIMALS}.")
        for name, value, allowed in (("gender", c.gender, GENDERS), ("age", c.age, AGES),
                                     ("emotion", c.emotion, EMOTIONS)):
            if value not in allowed:
                raise ValueError(f"plan.characters[{i}].{name}={value!r}; use one of {allowed}.")
    mouth = np.asarray(mouth_openness, dtype=np.float32)
    expected = (len(plan.characters), plan.num_frames)
    if mouth.shape != expected:
        raise ValueError(f"mouth_openness has shape {mouth.shape}, expected (num_characters, num_frames) = {expected} "
                         f"for plan {plan.clip_id!r}.")
    if not np.all(np.isfinite(mouth)) or mouth.size and (mouth.min() < 0.0 or mouth.max() > 1.0):
        raise ValueError("mouth_openness must be finite and in [0, 1]; normalise the speech energy before rendering.")
    return mouth


def render_clip(
    plan: ScenePlan,
    mouth_openness: np.ndarray,
    rng: np.random.Generator,
    camera_motion: bool = True,
    sensor_noise: bool = True,
) -> tuple[np.ndarray, list]:
    """Draw the frames of a planned clip: its visible characters over a random scene, mouths following the speech.

    Everything random (scene, looks, positions, blinks, camera, lighting, noise) is drawn from `rng` in a fixed
    order that does not depend on `mouth_openness`, `camera_motion` or `sensor_noise`: the same plan, openness and
    seed give identical frames, and switching the camera or the noise off changes nothing else.

    Args:
        plan (`ScenePlan`):
            The clip: frame size, duration and characters (only `plan.visible_characters` are drawn).
        mouth_openness (`np.ndarray` of shape `(len(plan.characters), plan.num_frames)`):
            Per character and frame, how far the mouth is open, in [0, 1] (0 is a closed line). Drawn at
            `MOUTH_LEVELS` levels; a talking head also nods by a pixel or two with it.
        rng (`np.random.Generator`):
            The source of everything random about the picture.
        camera_motion (`bool`, *optional*, defaults to `True`):
            Apply the clip's pan or zoom and hand-held shake; if `False` the camera is still (a centred crop).
        sensor_noise (`bool`, *optional*, defaults to `True`):
            Add the clip's Gaussian sensor noise.

    Returns:
        `tuple[np.ndarray, list]`: the frames, `uint8` of shape `(plan.num_frames, plan.height, plan.width, 3)`, and
        one entry per character of `plan.characters`: `None` if it is invisible, else
        `{"bbox": [x0, y0, x1, y1], "mouth_bbox": [x0, y0, x1, y1]}` in pixels of frame 0 (`x1`, `y1` exclusive,
        clipped to the frame); `mouth_bbox` covers the mouth fully open.

    Example:

    ```py
    >>> import numpy as np
    >>> from deepdubber_hf.data.render import render_clip
    >>> from deepdubber_hf.data.schema import Character, ScenePlan
    >>> plan = ScenePlan("demo", level=1, scene_type="monologue", duration_s=1.0,
    ...                  characters=[Character("person", "female", "adult", "happy", talking=True)])
    >>> mouth = np.abs(np.sin(np.arange(plan.num_frames) / 3))[None]
    >>> frames, layout = render_clip(plan, mouth, np.random.default_rng(0))
    >>> frames.shape, sorted(layout[0])
    ((25, 128, 160, 3), ['bbox', 'mouth_bbox'])
    ```
    """
    # 1. Check inputs
    mouth = _check_inputs(plan, mouth_openness)
    W, H, T = plan.width, plan.height, plan.num_frames
    margin = max(4, round(0.05 * max(W, H)))  # room for the camera to move without showing an edge
    cw, ch = W + 2 * margin, H + 2 * margin

    # 2. Scene and looks
    canvas = _draw_background(cw, ch, rng)
    visible = [i for i, c in enumerate(plan.characters) if c.visible]
    looks = {i: (_sample_person if plan.characters[i].species == PERSON else _sample_animal)(plan.characters[i], rng)
             for i in visible}

    # 3. Places: one slot each, side by side, in a random order; one common scale so that shoulders fit.
    n = len(visible)
    actors = {}
    if n:
        slot = W / n
        fit = min(1.0, min(slot / (2 * looks[i].body_half * looks[i].size * H) for i in visible))
        for slot_index, i in zip(rng.permutation(n), visible):
            look = looks[i]
            u = look.size * H * fit
            if n == 1:
                cx = rng.uniform(0.32, 0.68) * W
            else:
                cx = (slot_index + 0.5) * slot + rng.uniform(-0.1, 0.1) * slot
            head_top = look.top * H
            hy = round(margin + head_top + 0.55 * u)
            actors[i] = _Actor(look, u, round(margin + cx), hy, ch)
        for i in sorted(visible, key=lambda k: actors[k].u):  # bigger characters in front
            actor = actors[i]
            canvas.paste(actor.body, (actor.hx - actor.bx, actor.hy - actor.by), actor.body)

    # 4. Per-frame state: mouth levels, blinks, nods.
    levels = np.rint(mouth * (MOUTH_LEVELS - 1)).astype(np.int64)
    eyes = np.zeros((len(plan.characters), T), dtype=np.int64)
    nods = np.zeros((len(plan.characters), T), dtype=np.int64)
    for i in visible:
        frame = int(rng.integers(0, 3 * FPS))
        while frame < T:
            pattern = (1, 2, 1) if rng.random() < 0.5 else (2, 2, 1)
            for k, state in enumerate(pattern):
                if frame + k < T:
                    eyes[i, frame + k] = state
            frame += int(rng.integers(int(1.5 * FPS), 5 * FPS))
        amplitude = rng.uniform(0.03, 0.07) * actors[i].u
        smooth = np.zeros(T)
        state = 0.0
        for t in range(T):  # heads nod with their own speech, a frame or more behind it (none in frame 0)
            smooth[t] = state
            state = 0.6 * state + 0.4 * float(mouth[i, t])
        nods[i] = -np.rint(amplitude * smooth).astype(np.int64)
    zoom, dx, dy = _camera_path(T, margin, rng)
    if not camera_motion:
        zoom, dx, dy = np.ones(T), np.zeros(T), np.zeros(T)
    gain = _lighting(W, H, rng)
    noise_sigma = float(rng.uniform(0.5, 4.0))

    # 5. Draw the frames
    frames = np.empty((T, H, W, 3), dtype=np.uint8)
    order = sorted(visible, key=lambda k: actors[k].u)
    still = not camera_motion
    for t in range(T):
        image = canvas.copy()
        for i in order:
            actor = actors[i]
            head = actor.variant(int(levels[i, t]), int(eyes[i, t]))
            image.paste(head, (actor.hx - actor.ox, actor.hy - actor.oy + int(nods[i, t])), head)
        if still:
            image = image.crop((margin, margin, margin + W, margin + H))
        else:
            a = 1.0 / zoom[t]
            cx = W / 2 + margin + dx[t] - a * W / 2
            cy = H / 2 + margin + dy[t] - a * H / 2
            image = image.transform((W, H), Image.AFFINE, (a, 0.0, cx, 0.0, a, cy), Image.BILINEAR)
        frames[t] = np.asarray(image)

    # 6. Lighting and sensor noise, a few frames at a time to bound the float memory
    for start in range(0, T, 32):
        chunk = frames[start : start + 32].astype(np.float32)
        chunk *= gain
        if sensor_noise:
            chunk += rng.standard_normal((len(chunk), H, W, 1), dtype=np.float32) * noise_sigma
        np.clip(chunk, 0.0, 255.0, out=chunk)
        frames[start : start + 32] = (chunk + 0.5).astype(np.uint8)

    # 7. Layout at frame 0, in frame pixels
    a0 = 1.0 / zoom[0]
    ox0 = W / 2 + margin + dx[0] - a0 * W / 2
    oy0 = H / 2 + margin + dy[0] - a0 * H / 2

    def to_frame(box):
        x0, y0, x1, y1 = box
        return [int(min(W, max(0, math.floor((x0 - ox0) / a0)))), int(min(H, max(0, math.floor((y0 - oy0) / a0)))),
                int(min(W, max(0, math.ceil((x1 - ox0) / a0)))), int(min(H, max(0, math.ceil((y1 - oy0) / a0))))]

    layout = []
    for i in range(len(plan.characters)):
        if i not in actors:
            layout.append(None)
            continue
        actor, nod = actors[i], int(nods[i, 0])
        head, body = actor.head_bbox(nod), actor.body_bbox()
        union = (min(head[0], body[0]), min(head[1], body[1]), max(head[2], body[2]), max(head[3], body[3]))
        layout.append({"bbox": to_frame(union), "mouth_bbox": to_frame(actor.mouth_bbox(nod))})
    return frames, layout


# ----------------------------------------------------------------------------------------------------------------
# Encoding
# ----------------------------------------------------------------------------------------------------------------


def encode_video(frames: np.ndarray, fps: int = FPS, crf: int = 28) -> bytes:
    """Encode frames as a silent H.264 mp4 (yuv420p, `+faststart`, no audio stream) with the system `ffmpeg`.

    The bytes are deterministic for the same input (one encoder thread, bit-exact flags, no metadata), so a corpus
    rebuilt from the same seed is identical. Callers pick `crf` at random to vary the compression noise.

    Args:
        frames (`np.ndarray`):
            `uint8` RGB frames of shape `(num_frames, height, width, 3)`; height and width must be even (yuv420p).
        fps (`int`, *optional*, defaults to 25):
            Frame rate of the video.
        crf (`int`, *optional*, defaults to 28):
            x264 constant rate factor, 0 (lossless) to 51 (worst).

    Returns:
        `bytes`: the mp4 file.

    Example:

    ```py
    >>> import numpy as np
    >>> from deepdubber_hf.data.render import encode_video
    >>> video = encode_video(np.zeros((25, 128, 160, 3), dtype=np.uint8))
    >>> video[4:8]
    b'ftyp'
    ```
    """
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise ValueError(f"frames must be a uint8 numpy array, got {getattr(frames, 'dtype', type(frames).__name__)}; "
                         "convert with np.clip(x, 0, 255).astype(np.uint8).")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must have shape (num_frames >= 1, height, width, 3), got {frames.shape}.")
    num_frames, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"frames are {width}x{height}; yuv420p needs even dimensions, so crop or pad to "
                         f"{width + width % 2}x{height + height % 2}.")
    if not isinstance(fps, (int, np.integer)) or fps <= 0:
        raise ValueError(f"fps must be a positive integer, got {fps!r}.")
    if not isinstance(crf, (int, np.integer)) or not 0 <= crf <= 51:
        raise ValueError(f"crf must be an integer in [0, 51], got {crf!r}.")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise FileNotFoundError("ffmpeg was not found on PATH; install the Debian package `ffmpeg` "
                                "(apt-get install ffmpeg).")
    with tempfile.TemporaryDirectory() as folder:
        # +faststart rewrites the file to move the index to the front, so the output must be seekable: a file.
        path = os.path.join(folder, "clip.mp4")
        command = [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(int(fps)), "-i", "pipe:0",
            "-an", "-c:v", "libx264", "-preset", "medium", "-crf", str(int(crf)), "-pix_fmt", "yuv420p",
            "-colorspace", "smpte170m", "-color_primaries", "smpte170m", "-color_trc", "smpte170m",
            "-color_range", "tv", "-threads", "1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
            "-map_metadata", "-1", "-movflags", "+faststart", "-f", "mp4", path,
        ]
        result = subprocess.run(command, input=np.ascontiguousarray(frames).tobytes(), capture_output=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"ffmpeg failed to encode {num_frames} frames of {width}x{height}: "
                               f"{result.stderr.decode(errors='replace').strip()}")
        with open(path, "rb") as f:
            return f.read()


__all__ = ["MOUTH_LEVELS", "SUPERSAMPLE", "encode_video", "render_clip"]
