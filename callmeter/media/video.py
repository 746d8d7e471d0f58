"""The default video when a test has no media file: a generated moving test pattern.

Pure Python (``bytes`` slicing and joins, no NumPy), deterministic, in planar YUV 4:2:0
(``yuv420p``: a full-size luma plane then two quarter-size chroma planes, 8 bits each, the
layout every video encoder takes). A frame of 1280x720 takes about a millisecond to build.

The picture, top to bottom:

- the upper two thirds: eight colour bars (the EBU/SMPTE order white, yellow, cyan, green,
  magenta, red, blue, black, in BT.601 limited range) with a luma ramp inside each bar,
  scrolling left by ``speed`` pixels a frame, so every frame differs and motion estimation
  has real work;
- over the bars, a box with the frame number (five digits, a 3x5 pixel font scaled up), so a
  human can tell frames apart in a capture and spot a frozen or repeated picture;
- the lower third: a static horizontal grey ramp (black to white), a band with an easy,
  predictable gradient;
- optionally a box of seeded random noise (new noise every frame) in the lower third. Clean
  synthetic pictures compress to almost nothing, so an encoder under rate control sends far
  less than its target bit rate; the noise box makes it spend its budget, so the generated
  stream loads the network like camera video does (see ``callmeter.media.encode``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "BARS_YUV",
    "VIDEO_360P",
    "VIDEO_720P",
    "VideoFormat",
    "YuvFrame",
    "pattern_frame",
    "pattern_frames",
]


@dataclass(frozen=True)
class VideoFormat:
    """Picture size and frame rate of a video stream (sizes even, as 4:2:0 needs)."""

    width: int = 640
    height: int = 360
    fps: int = 25

    def __post_init__(self) -> None:
        if self.width < 64 or self.height < 64 or self.width % 2 or self.height % 2:
            raise ValueError(f"video size must be even and at least 64x64, got {self.label}")
        if not 1 <= self.fps <= 60:
            raise ValueError(f"video frame rate must be 1..60 fps, got {self.fps}")

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height}"


VIDEO_360P = VideoFormat(640, 360, 25)
VIDEO_720P = VideoFormat(1280, 720, 25)

#: (Y, U, V) of the eight bars, BT.601 limited range (75% bars).
BARS_YUV: tuple[tuple[int, int, int], ...] = (
    (180, 128, 128),  # white (75%)
    (162, 44, 142),  # yellow
    (131, 156, 44),  # cyan
    (112, 72, 58),  # green
    (84, 184, 198),  # magenta
    (65, 100, 212),  # red
    (35, 212, 114),  # blue
    (16, 128, 128),  # black
)

# 3x5 pixel digits, one string of 15 bits per digit, row by row.
_FONT = (
    "111101101101111",
    "010110010010111",
    "111001111100111",
    "111001111001111",
    "101101111001001",
    "111100111001111",
    "111100111101111",
    "111001001001001",
    "111101111101111",
    "111101111001111",
)
_COUNTER_DIGITS = 5
_FG = 235
_BG = 16


@dataclass(frozen=True)
class YuvFrame:
    """One ``yuv420p`` picture: planes without row padding (``width`` bytes per luma row)."""

    width: int
    height: int
    y: bytes
    u: bytes
    v: bytes

    def to_bytes(self) -> bytes:
        """The packed ``yuv420p`` buffer (Y, then U, then V)."""
        return self.y + self.u + self.v


class _Pattern:
    """Everything about the pattern that does not change from frame to frame."""

    def __init__(self, width: int, height: int, speed: int) -> None:
        self.width = width
        self.height = height
        self.speed = speed
        self.bars_height = (2 * height // 3) & ~1
        bar = width // len(BARS_YUV)
        luma = bytearray()
        u = bytearray()
        v = bytearray()
        for i in range(width):
            index = min(i // bar, len(BARS_YUV) - 1)
            y0, u0, v0 = BARS_YUV[index]
            ramp = (i % bar) * 24 // bar  # a small ramp inside each bar
            luma.append(min(235, y0 + ramp))
            if i % 2 == 0:
                u.append(u0)
                v.append(v0)
        # Doubled rows: a rotation by k is one slice, ``row2[k:k + width]``.
        self.luma_row2 = bytes(luma) * 2
        self.u_row2 = bytes(u) * 2
        self.v_row2 = bytes(v) * 2
        self.ramp_row = bytes(16 + 219 * i // (width - 1) for i in range(width))
        self.scale = max(1, height // 60)
        self.grey_chroma_row = bytes([128]) * (width // 2)

    def counter_rows(self, number: int) -> list[bytes]:
        """Rows of the frame-number box (light digits on black), each as wide as the box."""
        text = f"{number % 10**_COUNTER_DIGITS:0{_COUNTER_DIGITS}d}"
        s = self.scale
        rows = []
        for r in range(5):
            row = bytearray([_BG]) * s
            for ch in text:
                bits = _FONT[int(ch)][3 * r : 3 * r + 3]
                for bit in bits:
                    row += bytes([_FG if bit == "1" else _BG]) * s
                row += bytes([_BG]) * s
            rows.extend([bytes(row)] * s)
        blank = bytes([_BG]) * len(rows[0])
        return [blank] * s + rows + [blank] * s


def pattern_frame(
    width: int = 640,
    height: int = 360,
    index: int = 0,
    *,
    speed: int = 4,
    noise: bool = True,
    seed: int = 0,
) -> YuvFrame:
    """Frame ``index`` of the test pattern (see the module docstring)."""
    return _frame(_Pattern(width, height, speed), index, noise, seed)


def pattern_frames(
    fmt: VideoFormat = VIDEO_360P,
    count: int | None = None,
    *,
    speed: int = 4,
    noise: bool = True,
    seed: int = 0,
) -> Iterator[YuvFrame]:
    """``count`` frames of the test pattern (forever when ``count`` is None)."""
    VideoFormat(fmt.width, fmt.height, fmt.fps)  # validate
    pattern = _Pattern(fmt.width, fmt.height, speed)
    index = 0
    while count is None or index < count:
        yield _frame(pattern, index, noise, seed)
        index += 1


def _frame(p: _Pattern, index: int, noise: bool, seed: int) -> YuvFrame:
    w, h = p.width, p.height
    shift = (index * p.speed) % w
    shift &= ~1  # keep luma and chroma aligned
    bar_row = p.luma_row2[shift : shift + w]
    rows = [bar_row] * p.bars_height + [p.ramp_row] * (h - p.bars_height)

    counter = p.counter_rows(index)
    x0 = y0 = 2 * p.scale
    for i, box_row in enumerate(counter):
        if y0 + i >= h:
            break
        row = rows[y0 + i]
        rows[y0 + i] = row[:x0] + box_row[: w - x0] + row[x0 + len(box_row) :]

    if noise:
        rng = random.Random(seed * 1_000_003 + index)
        nw, nh = (w // 4) & ~1, (h - p.bars_height) // 2
        nx, ny = (w - nw) // 2, p.bars_height + (h - p.bars_height - nh) // 2
        for r in range(ny, ny + nh):
            row = rows[r]
            rows[r] = row[:nx] + rng.randbytes(nw) + row[nx + nw :]

    cw, ch = w // 2, h // 2
    cshift = shift // 2
    bars_c = p.bars_height // 2
    u_rows = [p.u_row2[cshift : cshift + cw]] * bars_c + [p.grey_chroma_row] * (ch - bars_c)
    v_rows = [p.v_row2[cshift : cshift + cw]] * bars_c + [p.grey_chroma_row] * (ch - bars_c)
    # The counter box is grey in chroma.
    box_w = len(counter[0]) // 2
    cx0, cy0 = x0 // 2, y0 // 2
    grey = p.grey_chroma_row[:box_w]
    for i in range(len(counter) // 2):
        r = cy0 + i
        if r >= ch:
            break
        u_rows[r] = u_rows[r][:cx0] + grey[: cw - cx0] + u_rows[r][cx0 + box_w :]
        v_rows[r] = v_rows[r][:cx0] + grey[: cw - cx0] + v_rows[r][cx0 + box_w :]
    return YuvFrame(w, h, b"".join(rows), b"".join(u_rows), b"".join(v_rows))
