"""``python -m cubemosaic key=value ...``: a Hydra application (``@hydra.main``) that runs the job.

Every Hydra flag works as in any Hydra app: ``--multirun``/``-m`` sweeps, ``--config-dir``/``-cd``
and ``--config-name``/``-cn`` (a user's own config folder and groups, e.g. ``catalog=mine`` from
``myconf/catalog/mine.yaml``), ``--cfg job|hydra|all``, ``--info``, ``--help`` (the keys below),
``--hydra-help``, ``--shell-completion``; ``--version`` prints cubemosaic's and Hydra's versions.

What Hydra's run directory means here (``conf/config.yaml``, ``hydra:``): it *is* ``output_dir``
(``<output_dir>/<swept key=value,...>`` for each job of a sweep, named by the swept keys only;
``output_dir`` itself when it already differs per job, e.g. ``sweep/r${resolution}``), Hydra writes
nothing of its own there (no ``.hydra/``, no log file: the log goes to stderr, the provenance into
the stores and STAC items), and ``hydra.job.chdir=true`` changes nothing for relative paths, which are read against the
folder the command was started in.

The CLI only gathers the configuration and calls :func:`cubemosaic.pipeline.run`. Any failure a
user can cause, Hydra's composition errors included, ends with one line on stderr
(``cubemosaic: error: ...``) and a non-zero exit (2 for the configuration); ``debug=true`` (or
``CUBEMOSAIC_DEBUG=1``) shows the traceback before that line, with the same exit code. A refused
run takes away the folders it created and left empty.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import re
import signal
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields, replace
from typing import Any

# Hydra and the configuration are on every path of the command line (``--help`` included); the
# stages' heavy libraries (dask, odc-loader, rasterio) are imported by the pipeline when a stage runs.
import hydra
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.utils import get_original_cwd
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from . import __version__
from .clusterspec import ClusterSpec
from .config import (
    CatalogConf,
    Config,
    conf_dir,
    note_created,
    register_schemas,
    remove_created,
    to_settings,
)
from .errors import ConfigError, CubeMosaicError
from .pipeline import run
from .sweeps import finish as finish_sweep
from .sweeps import note as note_sweep_folder
from .sweeps import quiet as quiet_job
from .tuning import configure

log = logging.getLogger("cubemosaic")


def compose(overrides: Sequence[str]):
    """The composed config for ``overrides`` (raises :class:`ConfigError` with one line)."""
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


#: Keys whose values are paths, URLs or WKT, taken as written (``~``, spaces, parentheses ...).
PATH_KEYS = ("output_dir", "zarr_dir", "cube_url", "catalog.url", "aoi")


def _split(override: str) -> tuple[str, str, bool]:
    """(key without Hydra's ``+``/``++``/``~`` prefix, value, whether it has a value) of an override."""
    key, sep, value = str(override).partition("=")
    return key.lstrip("+~"), value, bool(sep)


def _listify(override: str) -> str:
    """An override as the user meant it: ``bands=red`` or ``bands=red,nir`` (a scalar or bare list
    where a list is meant) -> ``bands=[...]``; a path Hydra's grammar cannot read unquoted
    (``output_dir=~/x``) -> quoted."""
    key = override.partition("=")[0]
    name, value, sep = _split(override)
    if sep and name in ("bands", "mask_classes") and value and not value.startswith("["):
        return f"{key}=[{value}]"
    if sep and name in PATH_KEYS and value and value[0] not in "'\"" and not _parses(override):
        quote = "'" if "'" not in value else '"'
        return f"{key}={quote}{value}{quote}"
    return override


def _parses(override: str) -> bool:
    try:
        OverridesParser.create().parse_override(override)
    except Exception:  # Hydra's grammar errors: quote the value
        return False
    return True


def _refuse_unknown_keys(cfg) -> None:
    """Hydra lets ``+key=value`` add a key the schema does not have (a misspelt ``+resolutoin=60`` would
    be ignored): refuse every key that is not a field of :class:`~cubemosaic.config.Config`."""
    nodes = [("", cfg, Config), ("catalog.", cfg.catalog, CatalogConf), ("cluster.", cfg.cluster, ClusterSpec)]
    for prefix, node, schema in nodes:
        known = {f.name for f in fields(schema)}
        unknown = sorted(set(node.keys()) - known)
        if unknown:
            raise ConfigError(f"{prefix}{unknown[0]}", "unknown key (python -m cubemosaic --help lists the keys)")


def _explain(e: Exception) -> tuple[str, str]:
    """(parameter, problem) from a Hydra/OmegaConf composition error."""
    cause = e
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = (str(cause).splitlines() or [type(cause).__name__])[0]
    missing = re.search(r"Could not find '([^']+)/([^']*)'", str(e))
    if missing:  # an unknown option of a config group
        group, option = missing.groups()
        # Hydra lists the options of every config folder on its search path (a user's --config-dir too).
        listed = re.search(rf"Available options in '{re.escape(group)}':\n((?:\t.*\n?)+)", str(e))
        if listed:
            options = sorted(line.strip() for line in listed.group(1).splitlines() if line.strip())
        else:
            options = sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))
        return group, f"no option {option!r}; choose one of {', '.join(options)}"
    key = getattr(cause, "full_key", None) or getattr(cause, "key", None)
    if key and "not in" in text:
        return str(key), "unknown key (python -m cubemosaic --help lists the keys)"
    if key:
        return str(key), text
    return "override", (str(e).splitlines() or [text])[0]


def _setup_logging(debug: bool) -> None:
    if not debug:
        # odc-loader warps pixel arrays in memory, which rasterio reports as "not georeferenced".
        warnings.filterwarnings("ignore", message="Dataset has no geotransform")
        # zarr's note that the stores' scale filter is a numcodecs codec (the README says so).
        warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s cubemosaic: %(message)s", "%H:%M:%S"))
    root = logging.getLogger("cubemosaic")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False
    # Third-party loggers would repeat a failure with tracebacks; our one line says it. asyncio's
    # among them: after Ctrl-C, a distributed Client's cancelled gathers are each logged as "Task
    # exception was never retrieved" with a traceback when they are collected.
    for noisy in ("distributed", "rasterio", "odc", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.CRITICAL)


#: Hydra's flags that take a value (``--cfg job``); ``--info``/``-i`` takes one of its own words or none.
_VALUE_FLAGS = frozenset({"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                          "--config-dir", "-cd", "--experimental-rerun"})  # fmt: skip
_INFO_FLAGS = frozenset({"--info", "-i"})
_INFO_WORDS = frozenset({"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"})


def _takes_value(flag: str) -> bool:
    """Whether Hydra's parser reads the next argument as ``flag``'s value (argparse accepts a long
    flag's unambiguous prefix: ``--config-d x``)."""
    if "=" in flag:
        return False
    if flag in _VALUE_FLAGS:
        return True
    longs = [f for f in (*_VALUE_FLAGS, *_INFO_FLAGS, "--help", "--hydra-help", "--version", "--resolve", "--run",
                         "--multirun", "--shell-completion") if f.startswith("--")]  # fmt: skip
    matches = [f for f in longs if f.startswith(flag)] if flag.startswith("--") and len(flag) > 2 else []
    return len(matches) == 1 and matches[0] in _VALUE_FLAGS


def _flags_first(args: Sequence[str]) -> list[str]:
    """Hydra's flags (with their values) before the overrides, each group in its order, and a bare
    ``--info`` after them (it would take the first override as its value): Hydra's parser refuses
    overrides after a flag that follows overrides (``catalog=demo --multirun resolution=60,120``
    printed its usage and "unrecognized arguments")."""
    flags: list[str] = []
    overrides: list[str] = []
    last: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        following = args[i + 1] if i + 1 < len(args) else None
        if not arg.startswith("-"):  # an override starts with its key (or +, ~)
            overrides.append(arg)
        elif arg in _INFO_FLAGS:
            if following in _INFO_WORDS:
                flags += [arg, following]
                i += 1
            else:
                last.append(arg)
        elif _takes_value(arg) and following is not None:
            flags += [arg, following]
            i += 1
        else:
            flags.append(arg)
        i += 1
    return flags + overrides + last


def _quiet_broken_pipe() -> int:
    """stdout's reader has gone (``--help | head``): stop quietly, as a tool SIGPIPE ends (Python
    ignores SIGPIPE, so the write raised instead); the exit status such a tool has."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
    return 128 + signal.SIGPIPE


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (poll says POLLERR on Linux)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll, or no file descriptor
        return False


def _interrupt(signum, frame) -> None:
    # The interrupt can land between zarr making a coroutine and handing it to its event loop
    # (zarr.core.sync); collected later, that coroutine would print Python's "coroutine ... was
    # never awaited" with a source line under our one line. The run is ending: work it abandons
    # is expected to be abandoned.
    warnings.filterwarnings("ignore", message=r"coroutine '.*' was never awaited", category=RuntimeWarning)
    raise KeyboardInterrupt


def _job(cfg: Any) -> None:
    """Hydra's task function: one job, in ``output_dir`` (the job's run directory)."""
    _started.append(True)
    try:
        _refuse_unknown_keys(cfg)
        OmegaConf.set_struct(cfg, False)
        cfg.output_dir = HydraConfig.get().runtime.output_dir  # absolute; a sweep's job folder
        with _working_dir(get_original_cwd()):  # relative paths mean what they meant where the user typed them
            settings = replace(to_settings(cfg), given=_given_keys(HydraConfig.get().overrides.task))
        if settings.stage == "plan":  # it writes nothing: no folder of it stays behind
            quiet_job()
        run(settings)
        if settings.stage == "plan":
            _remove_created()
    except CubeMosaicError as e:
        quiet_job()  # a sweep's folders: cubemosaic.sweeps
        _remove_created()
        if _debug_asked():
            raise
        # Said here, in one line: Hydra would add its own line and a traceback to an exception.
        print(f"cubemosaic: error: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None


#: Set when Hydra has called the job: an OSError before that is Hydra making the run directory.
_started: list[bool] = []


def _debug_asked(args: Sequence[str] = ()) -> bool:
    """``debug=true`` (any case, or 1, yes) among ``args`` (else this process's arguments), or ``CUBEMOSAIC_DEBUG=1``."""
    words = args or sys.argv[1:]
    return os.environ.get("CUBEMOSAIC_DEBUG", "") not in ("", "0") or any(
        a.lower().lstrip("+") in ("debug=true", "debug=1", "debug=yes") for a in words
    )


@contextmanager
def _working_dir(folder: str) -> Iterator[None]:
    here = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(here)


def _remove_created(litter: Sequence[str] = ()) -> None:
    """A refused run takes away the folders it created and left empty (never one the user had)."""
    for folder in remove_created(litter):
        log.debug("removed %s, which this refused run had created", folder)


def _hydra_error(e: BaseException) -> bool:
    """Whether ``e`` comes from Hydra or OmegaConf (an override or config the user wrote)."""
    return isinstance(e, HydraException | OmegaConfBaseException)


def _register_resolvers() -> None:
    if not OmegaConf.has_resolver("expanduser"):
        OmegaConf.register_new_resolver("expanduser", _run_dir)
    if not OmegaConf.has_resolver("cubemosaic_job_folder"):
        OmegaConf.register_new_resolver("cubemosaic_job_folder", _job_folder)


#: The keys the command line's ``--multirun`` sweeps (set by :func:`main`): they name a job's folder.
_swept: list[str] = []


def _swept_keys(args: Sequence[str]) -> list[str]:
    """The keys ``args`` sweep (``resolution=60,120``, ``catalog.url=glob(...)``, ...)."""
    parser = OverridesParser.create()
    keys = []
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            override = parser.parse_override(arg)
        except Exception:  # Hydra's grammar errors: Hydra itself names them
            continue
        if override.is_sweep_override():
            keys.append(override.key_or_group)
    return keys


def _given_keys(overrides: Sequence[str]) -> frozenset[str]:
    """The keys of the command line's overrides (``resolution=20``, ``+mask_classes=[3,8]``),
    config groups (``catalog``) among them."""
    return frozenset(_split(line)[0] for line in overrides)


def _job_folder(_root_: Any) -> str:
    """``hydra.sweep.subdir``: a sweep's job folder under ``output_dir``, named by the swept keys
    with this job's values (``resolution=60``; a value with characters a folder name cannot hold
    safely, ``/`` among them, has them as ``_`` and a hash of the value). Left out: the keys
    ``output_dir`` itself interpolates (``output_dir=sweep/r${resolution}`` already differs per
    job: used as given), ``output_dir`` and the keys ``override_dirname.exclude_keys`` lists (they
    do not change the outputs). Nothing left: the job writes into ``output_dir`` itself."""
    node = _root_._get_node("output_dir")
    raw = str(node._value()) if node is not None else ""  # before interpolation: ${resolution} ...
    excluded = set(_root_.hydra.job.config.override_dirname.exclude_keys or ())
    names = []
    for line in _root_.hydra.overrides.task:
        key, value, _ = _split(line)
        if key not in _swept or key in excluded or key == "output_dir":
            continue
        if re.search(r"\$\{\s*" + re.escape(key) + r"\s*\}", raw):
            continue
        safe = re.sub(r"[^\w.+@-]", "_", value)
        if safe != value:
            safe = f"{safe}-{hashlib.sha1(value.encode()).hexdigest()[:8]}"
        names.append(f"{key}={safe}")
    return ",".join(sorted(names))


def _run_dir(path: Any) -> str:
    """``hydra.run.dir``/``hydra.sweep.dir``: ``path`` with ``~`` expanded, noted (before Hydra
    creates it) as this run's if it does not exist yet, so a refused run takes it away."""
    expanded = os.path.expanduser(str(path))
    note_created(expanded)
    note_sweep_folder(expanded)  # a sweep's job folder outside its sweep folder (sweep/r${resolution})
    return expanded


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``argv`` (else this process's own arguments) -> the exit code."""
    code = _main(argv)
    if argv is None:  # the process's own command line: it ends now
        # Everything is written and closed (context managers close the datasets, stores, clusters
        # and locks). The interpreter's shutdown would then walk every object the run's libraries
        # left (Dask, xarray, odc, GDAL's bindings) looking for cycles: 0.5-0.75 s after the last
        # line, on the demo and year20 (0.07 s frozen). Frozen, they are never collected: the
        # system takes the memory back; atexit handlers and weakref finalizers still run. Not for
        # a caller's argv (a test, a library user), whose process goes on.
        gc.freeze()
    return code


def _main(argv: Sequence[str] | None) -> int:
    configure()  # before anything can use GDAL (its block cache is read once)

    args = _flags_first([_listify(a) for a in (sys.argv[1:] if argv is None else argv)])
    if "--version" in args:  # Hydra's own flag prints only Hydra's version
        try:
            print(f"cubemosaic {__version__} (Hydra {hydra.__version__})", flush=True)
        except BrokenPipeError:
            return _quiet_broken_pipe()
        return 0
    debug = _debug_asked(args)
    multirun = any(a in ("-m", "--multirun") for a in args)
    _swept[:] = _swept_keys(args) if multirun else []
    _setup_logging(debug)
    # Kubernetes stops a pod with SIGTERM: unwind like Ctrl-C so started clusters shut down.
    signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C unwinds the run even when the parent left SIGINT ignored (Python then installs no
    # handler of its own: a job started by a process that ignores it, as a test runner's or
    # nohup's children are, would otherwise run on to the end and exit 0).
    signal.signal(signal.SIGINT, _interrupt)
    register_schemas()
    _register_resolvers()
    # Hydra then raises what it would print with a trimmed traceback: we print it as one line.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    app = hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")(_job)
    saved = sys.argv
    sys.argv = [saved[0] if saved else "cubemosaic", *args]
    try:
        app()
    except SystemExit as e:  # Hydra's --help, --cfg, --info ... end so; so does a job's one-line error
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except CubeMosaicError as e:
        _remove_created()
        if debug:  # the traceback, then the same line and exit code as without debug
            traceback.print_exc()
        print(f"cubemosaic: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("cubemosaic: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as e:
        _remove_created()
        if isinstance(e, BrokenPipeError) and _stdout_gone():  # not a socket's broken pipe
            return _quiet_broken_pipe()
        if _hydra_error(e):
            error = ConfigError(*_explain(e))
        elif isinstance(e, OSError) and not _started:  # Hydra makes the run directory before the job starts
            error = ConfigError("output_dir", f"{e.filename} is not writable ({e.strerror or e})")
        else:
            raise
        if debug:
            traceback.print_exc()
        print(f"cubemosaic: error: {error}", file=sys.stderr)
        return error.exit_code
    finally:
        sys.argv = saved
        # A sweep a job ended with its exit code: Hydra skips the callbacks' on_multirun_end.
        finish_sweep()
    return 0


if __name__ == "__main__":
    sys.exit(main())
