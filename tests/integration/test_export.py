"""The export writer (export.write_cog) on its own: streamed, so memory does not follow the grid."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import rasterio

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import numpy as np
    import rasterio.transform

    import cubemosaic
    from cubemosaic.export import write_cog

    cubemosaic.configure()  # GDAL's block cache, as a library user sets it before writing COGs

    n, out = int(sys.argv[1]), Path(sys.argv[2])

    def read(ys, xs):
        y = np.arange(ys.start, ys.stop, dtype=np.uint32)[:, None]
        x = np.arange(xs.start, xs.stop, dtype=np.uint32)[None, :]
        return np.stack([((y * 7 + x * 13 + b * 101) % 4000 + 1).astype(np.uint16) for b in range(4)])

    write_cog(out, read, shape=(4, n, n), block=(2048, 2048), dtype="uint16", crs="EPSG:32610",
              transform=rasterio.transform.from_origin(500000, 5300000, 10, 10),
              descriptions=["red", "green", "blue", "nir"], nodata=0, overview_resampling="average", scale=1e-4)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            print(int(line.split()[1]) // 1024)
    """
)


def _export_peak_mb(n: int, path) -> int:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(n), str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1])


def test_the_export_streams_its_memory_does_not_grow_with_the_grid(tmp_path):
    """A 4000 px and an 8000 px month (128 MB and 512 MB of pixels): the peak is the same give or take
    a few blocks, the files are whole, valid, tiled COGs with overviews and the pixels read back."""
    small, large = tmp_path / "small.tif", tmp_path / "large.tif"
    peaks = {4000: _export_peak_mb(4000, small), 8000: _export_peak_mb(8000, large)}
    assert peaks[8000] - peaks[4000] < 64, peaks
    assert peaks[8000] < 512, f"less than one month of pixels: {peaks}"
    with rasterio.open(large) as src:
        assert (src.count, src.height, src.width) == (4, 8000, 8000)
        assert src.overviews(1) and src.block_shapes[0] == (512, 512)
        assert src.scales == (1e-4,) * 4 and src.descriptions == ("red", "green", "blue", "nir")
        window = src.read(window=rasterio.windows.Window(6000, 7000, 3, 2))
    y = np.arange(7000, 7002)[:, None]
    x = np.arange(6000, 6003)[None, :]
    expected = np.stack([(y * 7 + x * 13 + b * 101) % 4000 + 1 for b in range(4)])
    np.testing.assert_array_equal(window, expected)
    assert not list(tmp_path.glob(".*")), "no staged or partial file left behind"
