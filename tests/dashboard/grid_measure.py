"""Measure the printed ECG grid: the PDF page rendered to pixels at a known resolution by poppler (pdftoppm), the
grid's line period found in those pixels. What is measured is the printed size, not what the SVG claims."""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DPI = 300
PX_PER_MM = DPI / 25.4


@dataclass
class GridMeasure:
    page: int
    minor_mm: float  # the period of the grid's lines, 1 mm when true scale
    major_mm: float  # the period of the bold lines, 5 mm when true scale
    width_mm: float  # of the grid's region found on the page


def page_size_pt(pdf: Path) -> tuple[float, float]:
    out = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("Page size:"))
    w, _, h = line.split(":", 1)[1].split()[:3]
    return float(w), float(h)


def render(pdf: Path, page: int, out_prefix: Path) -> np.ndarray:
    subprocess.run(["pdftoppm", "-r", str(DPI), "-f", str(page), "-l", str(page), "-png", "-singlefile",
                    str(pdf), str(out_prefix)], check=True)
    return np.asarray(Image.open(out_prefix.with_suffix(".png")).convert("RGB"), dtype=np.float64)


def _period_px(profile: np.ndarray, lo_px: float, hi_px: float) -> float:
    """The strongest period between lo_px and hi_px of a 1-D profile (FFT peak, parabolic interpolation)."""
    x = profile - profile.mean()
    x = x * np.hanning(len(x))
    n = 1 << int(np.ceil(np.log2(len(x) * 8)))  # zero-padded: a finer frequency grid
    spec = np.abs(np.fft.rfft(x, n))
    freqs = np.fft.rfftfreq(n)
    band = (freqs > 1 / hi_px) & (freqs < 1 / lo_px)
    k = int(np.flatnonzero(band)[np.argmax(spec[band])])
    a, b, c = np.log(spec[k - 1:k + 2] + 1e-12)
    shift = 0.5 * (a - c) / (a - 2 * b + c)
    return 1.0 / ((k + shift) / n)


def measure_grid(rgb: np.ndarray, page: int) -> GridMeasure | None:
    """The grid lines are red/pink and the traces black: take the reddish pixels, their column profile over the
    grid's rows, and its periods near 1 mm and near 5 mm."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    reddish = (r > 150) & (r - g > 20) & (r - b > 20)
    rows = np.flatnonzero(reddish.mean(axis=1) > 0.2)
    cols = np.flatnonzero(reddish.mean(axis=0) > 0.05)
    if len(rows) < 100 or len(cols) < 100:
        return None
    region = reddish[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    profile = region.mean(axis=0)
    minor = _period_px(profile, 0.5 * PX_PER_MM, 2.0 * PX_PER_MM) / PX_PER_MM
    # Bold lines: the strongly red pixels only.
    bold = ((r > 150) & (g < 140) & (b < 140))[rows.min():rows.max() + 1, cols.min():cols.max() + 1].mean(axis=0)
    major = _period_px(bold, 3.0 * PX_PER_MM, 8.0 * PX_PER_MM) / PX_PER_MM
    return GridMeasure(page, minor, major, (cols.max() - cols.min()) / PX_PER_MM)


def measure_pdf(pdf: Path, workdir: Path, max_pages: int = 4) -> GridMeasure | None:
    """The first page (of the first few) that carries an ECG grid, measured."""
    if not shutil.which("pdftoppm"):
        raise RuntimeError("pdftoppm (poppler-utils) is needed; scripts/setup.sh test installs it")
    for page in range(1, max_pages + 1):
        try:
            rgb = render(pdf, page, workdir / f"page-{page}")
        except subprocess.CalledProcessError:
            return None
        found = measure_grid(rgb, page)
        if found is not None:
            return found
    return None
