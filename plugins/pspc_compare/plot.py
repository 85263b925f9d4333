"""Line plots drawn with Pillow (no plotting library): one line per series, logarithmic axes, a legend.

Used by `pspc compare` for MSE against t. Non-positive values cannot sit on a log axis and are left out.
"""

from __future__ import annotations

import math

import numpy as np

from pspc_core.runtime.atomic import atomic_path

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def _decades(lo: float, hi: float) -> list[int]:
    return list(range(math.floor(lo), math.ceil(hi) + 1))


def _tick_label(e: int) -> str:
    return f"{10.0 ** e:g}" if -2 <= e <= 2 else f"1e{e}"


def line_plot(path, x, series: dict[str, np.ndarray], title: str = "", xlabel: str = "", ylabel: str = "",
              size: tuple[int, int] = (860, 540)) -> None:
    """Draw `series` (name → y values over `x`) on log-log axes and save a PNG at `path` (atomically)."""
    from PIL import Image, ImageDraw

    x = np.asarray(x, dtype=np.float64)
    font, small = _font(15), _font(12)
    W, H = size
    right = max(180, 64 + math.ceil(max((font.getlength(str(n)) for n in series), default=0)))  # the legend
    W += right - 180
    left, top, bottom = 84, 46, 64
    pw, ph = W - left - right, H - top - bottom
    ys = [np.asarray(v, dtype=np.float64) for v in series.values()]
    positive = np.concatenate([y[y > 0] for y in ys] + [np.array([])])
    if not (x > 0).any():
        raise ValueError("no positive x to draw on a logarithmic axis")
    if len(positive) == 0:  # every value 0 (a denoiser against itself): empty axes that say so
        positive, title = np.array([1.0]), f"{title} (every value is 0: nothing to draw)"
    x_lo, x_hi = math.log10(x[x > 0].min()), math.log10(x[x > 0].max())
    y_lo, y_hi = math.log10(positive.min()), math.log10(positive.max())
    x_lo, x_hi = (x_lo - 0.05, x_hi + 0.05) if x_hi > x_lo else (x_lo - 1, x_hi + 1)
    y_lo, y_hi = (y_lo - 0.15, y_hi + 0.15) if y_hi > y_lo else (y_lo - 1, y_hi + 1)

    def px(v):
        return left + (math.log10(v) - x_lo) / (x_hi - x_lo) * pw

    def py(v):
        return top + (y_hi - math.log10(v)) / (y_hi - y_lo) * ph

    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    for e in _decades(x_lo, x_hi):  # vertical grid and x ticks at decades
        if x_lo <= e <= x_hi:
            X = px(10.0 ** e)
            d.line([(X, top), (X, top + ph)], fill=(225, 225, 225))
            d.text((X, top + ph + 6), _tick_label(e), fill="black", font=small, anchor="ma")
    for e in _decades(y_lo, y_hi):
        if y_lo <= e <= y_hi:
            Y = py(10.0 ** e)
            d.line([(left, Y), (left + pw, Y)], fill=(225, 225, 225))
            d.text((left - 6, Y), _tick_label(e), fill="black", font=small, anchor="rm")
    d.rectangle([left, top, left + pw, top + ph], outline="black")
    for i, (name, y) in enumerate(zip(series, ys)):
        colour = PALETTE[i % len(PALETTE)]
        pts = [(px(a), py(b)) for a, b in zip(x, y) if a > 0 and b > 0 and np.isfinite(b)]
        if len(pts) > 1:
            d.line(pts, fill=colour, width=2)
        for X, Y in pts:
            d.ellipse([X - 3, Y - 3, X + 3, Y + 3], fill=colour)
        ly = top + 10 + 24 * i
        d.line([(left + pw + 16, ly), (left + pw + 44, ly)], fill=colour, width=3)
        d.text((left + pw + 52, ly), name, fill="black", font=font, anchor="lm")
    d.text((left + pw / 2, 14), title, fill="black", font=font, anchor="ma")
    d.text((left + pw / 2, H - 22), xlabel, fill="black", font=font, anchor="ma")
    label = Image.new("RGB", (ph, 22), "white")
    ImageDraw.Draw(label).text((ph / 2, 2), ylabel, fill="black", font=font, anchor="ma")
    img.paste(label.rotate(90, expand=True), (8, top))
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def score_map(path, t: list[float], values: list, scores: np.ndarray, best: np.ndarray, title: str = "",
              cell: int = 28) -> None:
    """A calibration's scores as a map: one row per noise level t (largest on top), one column per candidate,
    each row shaded from its best candidate (dark) to its worst (white) on a log scale of the relative gap, the
    chosen candidate ringed. Saved as PNG at `path` (atomically)."""
    from PIL import Image, ImageDraw

    L, V = scores.shape
    top, bottom = 46, 64
    left = max(90, (720 - V * cell) // 2)
    W, H = 2 * left + V * cell, top + L * cell + bottom
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    font, small = _font(14), _font(11)
    for k in range(L):
        row = np.asarray(scores[k], dtype=np.float64)
        gap = np.abs(row - row[best[k]])
        span = gap.max()
        for j in range(V):
            level = math.log1p(gap[j] / span * 99) / math.log(100) if span > 0 else 0.0
            shade = tuple(int(c + (255 - c) * level) for c in (31, 80, 160))
            x, y = left + j * cell, top + k * cell
            d.rectangle([x, y, x + cell - 1, y + cell - 1], fill=shade)
        x, y = left + int(best[k]) * cell, top + k * cell
        d.ellipse([x + 4, y + 4, x + cell - 5, y + cell - 5], outline=(214, 39, 40), width=3)
        d.text((left - 6, top + k * cell + cell / 2), f"{t[k]:.3g}", fill="black", font=small, anchor="rm")
    d.rectangle([left - 1, top - 1, left + V * cell, top + L * cell], outline=(120, 120, 120))
    step = max(1, math.ceil(V / 16))
    for j in range(0, V, step):
        d.text((left + j * cell + cell / 2, top + L * cell + 6), str(values[j]), fill="black", font=small, anchor="ma")
    d.text((W / 2, 14), title, fill="black", font=font, anchor="ma")
    d.text((left + V * cell / 2, H - 22), "candidate (chosen: ringed; darker: nearer the best)", fill="black",
           font=small, anchor="ma")
    d.text((left - 30, top - 20), "t", fill="black", font=font)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
