"""The README's picture of the statistics: one month of the demo as median, p25, medoid and
geomedian side by side, with one stretch (the median's 2-98 percentiles) for all four.

    python -m cubemosaic catalog=demo 'statistic=[median,p25,medoid,geomedian]' output_dir=stats
    python docs/statistics_figure.py stats docs/statistics-demo.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image, ImageDraw


def figure(output_dir: Path, png: Path, month: str = "2022-02", side: int = 300) -> Path:
    name = f"monthly-mosaic-{month}"
    folder = output_dir / name
    layers = [("median", ""), ("p25", "-p25"), ("medoid", "-medoid"), ("geomedian", "-geomedian")]
    images = []
    for label, suffix in layers:
        with rasterio.open(folder / f"{name}{suffix}.tif") as src:
            images.append((label, src.read([1, 2, 3]).astype(float)))
    reference = images[0][1]
    valid = (reference > 0).all(axis=0)
    lo = [np.percentile(reference[b][valid], 2) for b in range(3)]
    hi = [np.percentile(reference[b][valid], 98) for b in range(3)]
    sheet = Image.new("RGB", (len(images) * (side + 8) + 8, side + 40), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, (label, rgb) in enumerate(images):
        scaled = np.stack([np.clip((rgb[b] - lo[b]) / (hi[b] - lo[b]) * 255, 0, 255) for b in range(3)])
        panel = Image.fromarray(np.dstack(scaled.astype(np.uint8))).resize((side, side), Image.NEAREST)
        x = 8 + k * (side + 8)
        sheet.paste(panel, (x, 8))
        draw.text((x, side + 14), f"{month} {label} (one stretch for all)", fill=(0, 0, 0))
    sheet.save(png)
    return png


if __name__ == "__main__":
    print(figure(Path(sys.argv[1]), Path(sys.argv[2])))
