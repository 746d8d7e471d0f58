"""The generated video test pattern: size, determinism, motion, frame counter, noise box."""

from __future__ import annotations

import pytest

from callmeter.media.video import VIDEO_360P, VideoFormat, pattern_frame, pattern_frames


def test_planes_have_yuv420p_sizes() -> None:
    frame = pattern_frame(640, 360, 0)
    assert (len(frame.y), len(frame.u), len(frame.v)) == (640 * 360, 320 * 180, 320 * 180)
    assert len(frame.to_bytes()) == 640 * 360 * 3 // 2


def test_deterministic_and_moving() -> None:
    a, b = list(pattern_frames(VIDEO_360P, 2))
    assert a == pattern_frame(640, 360, 0)
    assert a.y != b.y and a.u != b.u  # the bars scroll
    # Without noise, the lower ramp rows are identical in every frame.
    c, d = pattern_frame(640, 360, 0, noise=False), pattern_frame(640, 360, 1, noise=False)
    assert c.y[-640:] == d.y[-640:]


def test_frame_counter_changes_the_counter_box_only() -> None:
    # With speed 0 and no noise, frames 0 and 1 differ only where the digits are drawn.
    f0 = pattern_frame(640, 360, 0, speed=0, noise=False)
    f1 = pattern_frame(640, 360, 1, speed=0, noise=False)
    diff = [i for i in range(len(f0.y)) if f0.y[i] != f1.y[i]]
    rows = {i // 640 for i in diff}
    scale = 360 // 60
    assert diff and min(rows) >= 3 * scale and max(rows) < 2 * scale + 7 * scale
    assert f0.u == f1.u and f0.v == f1.v


def test_noise_box_is_seeded() -> None:
    assert pattern_frame(320, 180, 3, seed=1) == pattern_frame(320, 180, 3, seed=1)
    assert pattern_frame(320, 180, 3, seed=1) != pattern_frame(320, 180, 3, seed=2)


def test_format_validation() -> None:
    with pytest.raises(ValueError):
        VideoFormat(641, 360)
    with pytest.raises(ValueError):
        VideoFormat(640, 360, 0)
