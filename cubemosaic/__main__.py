"""``python -m cubemosaic key=value ...``: compose the Hydra config, validate it, run.

The CLI only gathers the configuration and calls :func:`cubemosaic.pipeline.run`. Any
failure a user can cause ends with one line on stderr (``cubemosaic: error: ...``) and a
non-zero exit; ``debug=true`` (or ``CUBEMOSAIC_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence

HELP = """\
usage: python -m cubemosaic [--help] [--cfg] [key=value ...]

Sentinel-2 L2A monthly cloud-free median mosaics (Hydra overrides; see README.md).

  catalog=planetary_computer|earth_search|demo   catalog.url=<STAC API URL or ItemCollection/catalog file>
  start_date=YYYY-MM-DD end_date=YYYY-MM-DD      aoi=[min_lon,min_lat,max_lon,max_lat]
  bands=[red,green,blue,nir]  collection=...     resolution=20 (metres)   crs=EPSG:XXXX
  max_items=N  max_cloud_cover=0-100             mask_classes=[0,1,2,3,8,9,10] (SCL)
  resampling=nearest  chunk_size=1024            on_read_error=fail|skip
  cluster=auto|local|gateway   cluster.threads_per_worker=N   cluster.dashboard=false
  output_dir=output  zarr_dir=<folder or s3://...>  stage=all|cube|composite|export|mosaic
  overwrite=false   debug=false

  --cfg   print the composed configuration and exit
  environment: PC_SDK_SUBSCRIPTION_KEY (Planetary Computer key, optional);
               DASK_CLUSTER, DASK_GATEWAY__ADDRESS, DASK_GATEWAY_* (Dask Gateway, as Calrissian sets them)
  example: python -m cubemosaic catalog=demo output_dir=demo-out
"""

log = logging.getLogger("cubemosaic")


def compose(overrides: Sequence[str]):
    """The composed config for ``overrides`` (raises :class:`ConfigError` with one line)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from .config import conf_dir, register_schemas
    from .errors import ConfigError

    register_schemas()
    overrides = [_listify(o) for o in overrides]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
    except Exception as e:  # Hydra and OmegaConf raise many types; all mean a bad override
        raise ConfigError(*_explain(e)) from None
    OmegaConf.resolve(cfg)
    _refuse_unknown_keys(cfg)
    return cfg


def _listify(override: str) -> str:
    """``bands=red`` or ``bands=red,nir`` (a scalar or bare list where a list is meant) -> ``bands=[...]``."""
    key, sep, value = override.partition("=")
    if sep and key.lstrip("+~") in ("bands", "mask_classes") and value and not value.startswith("["):
        return f"{key}=[{value}]"
    return override


def _refuse_unknown_keys(cfg) -> None:
    """Hydra lets ``+key=value`` add a key the schema does not have (a misspelt ``+resolutoin=60`` would
    be ignored): refuse every key that is not a field of :class:`~cubemosaic.config.Config`."""
    from dataclasses import fields

    from .config import CatalogConf, ClusterSpec, Config
    from .errors import ConfigError

    nodes = [("", cfg, Config), ("catalog.", cfg.catalog, CatalogConf), ("cluster.", cfg.cluster, ClusterSpec)]
    for prefix, node, schema in nodes:
        known = {f.name for f in fields(schema)}
        unknown = sorted(set(node.keys()) - known)
        if unknown:
            raise ConfigError(f"{prefix}{unknown[0]}", "unknown key (python -m cubemosaic --help lists the keys)")


def _explain(e: Exception) -> tuple[str, str]:
    """(parameter, problem) from a Hydra/OmegaConf composition error."""
    import re

    cause = e
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = (str(cause).splitlines() or [type(cause).__name__])[0]
    missing = re.search(r"Could not find '([^']+)/([^']*)'", str(e))
    if missing:  # an unknown option of a config group
        group, option = missing.groups()
        options = sorted(p.stem for p in (_conf_dir() / group).glob("*.yaml"))
        return group, f"no option {option!r}; choose one of {', '.join(options)}"
    key = getattr(cause, "full_key", None) or getattr(cause, "key", None)
    if key and "not in" in text:
        return str(key), "unknown key (python -m cubemosaic --help lists the keys)"
    if key:
        return str(key), text
    return "override", (str(e).splitlines() or [text])[0]


def _conf_dir():
    from .config import conf_dir

    return conf_dir()


def _setup_logging(debug: bool) -> None:
    import warnings

    if not debug:
        # odc-loader warps pixel arrays in memory, which rasterio reports as "not georeferenced".
        warnings.filterwarnings("ignore", message="Dataset has no geotransform")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s cubemosaic: %(message)s", "%H:%M:%S"))
    root = logging.getLogger("cubemosaic")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False
    # Third-party loggers would repeat a failure with tracebacks; our one line says it.
    for noisy in ("distributed", "rasterio", "hydra", "odc"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.CRITICAL)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import CubeMosaicError

    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(HELP, end="")
        return 0
    show_cfg = "--cfg" in args
    overrides = [a for a in args if a != "--cfg"]
    debug = os.environ.get("CUBEMOSAIC_DEBUG", "") not in ("", "0") or any(
        a.lower() in ("debug=true", "debug=1", "debug=yes") for a in overrides
    )
    _setup_logging(debug)
    # Kubernetes stops a pod with SIGTERM: unwind like Ctrl-C so started clusters shut down.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        cfg = compose(overrides)
        if show_cfg:
            from omegaconf import OmegaConf

            print(OmegaConf.to_yaml(cfg), end="")
            return 0
        from .config import to_settings
        from .pipeline import run

        settings = to_settings(cfg)
        run(settings)
    except CubeMosaicError as e:
        if debug:
            raise
        print(f"cubemosaic: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("cubemosaic: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
