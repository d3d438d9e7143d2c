"""The simulator's pretrained tiny base: the repository's shipped one, or built once per machine and cached.

``make demo`` and the closed-loop benchmark fine-tune the base that ``training/pretrain_base.py`` pretrains on
the simulator's primitives (:mod:`kuavo_smolvla_ros.training.pretrain`: 10-12 minutes on two idle cores).
:func:`ensure_base` gives them that base in the folder they name: the base already there when its
``pretraining.json`` records the settings they ask for; else a copy of the repository's shipped base
(``assets/pretrained_base``, 2 MB, written by ``make base``) when it was built with those settings (and over
a base with those settings but other weights, an earlier shipped one); ``test/test_pretrain.py`` rebuilds it
with the command and requires the same bits, so code that builds another base fails the tests until ``make
base`` is run and its output committed (between the edit and the test, the shipped base is used as it is);
else a copy of the machine's cached one built with the same settings by the same code; else it runs the
command, then keeps a copy in the cache for the next clone.

The cache: ``$KUAVO_SMOLVLA_CACHE`` (default ``$XDG_CACHE_HOME/kuavo_smolvla_ros``, or
``~/.cache/kuavo_smolvla_ros``), one folder per base under ``pretrained_base/<key>``. The key is a hash of the
settings (:func:`~kuavo_smolvla_ros.training.pretrain.settings_record`), of every source and share file that can
change what the command builds (the package's Python modules, the share's ``config/`` folder: primitives, tasks,
robot profiles; the pretraining script and its config) and of the versions of the libraries that compute it:
a clone whose code or libraries differ in any of these builds, and caches, its own. Delete the folder to rebuild.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import kuavo_smolvla_ros
from kuavo_smolvla_ros.resources import share_file
from kuavo_smolvla_ros.training.pretrain import REPORT_FILE, config_settings, settings_record, stale_base

LOG = logging.getLogger(__name__)
#: The environment variable naming the cache folder.
CACHE_ENV = "KUAVO_SMOLVLA_CACHE"
#: The libraries whose versions are part of the key (they compute the data and the weights).
KEY_LIBRARIES = ("torch", "lerobot", "transformers", "numpy", "pillow", "safetensors")


def cache_root() -> Path:
    """The machine's cache folder (see the module doc); not created here."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "kuavo_smolvla_ros"


def _files(folder: Path, pattern: str) -> list[Path]:
    return sorted(p for p in folder.rglob(pattern) if p.is_file() and "__pycache__" not in p.parts)


def code_fingerprint(script: Path, config_file: Path) -> str:
    """sha256 (hex) of what, besides the settings, decides the base: the package's ``*.py`` files, the share's
    ``config/`` folder, ``script`` and ``config_file`` (path relative to their folder, then bytes) and
    :data:`KEY_LIBRARIES`' versions."""
    digest = hashlib.sha256()
    package = Path(kuavo_smolvla_ros.__file__).resolve().parent
    share_config = share_file("config/primitives.yaml").parent
    for root, files in ((package, _files(package, "*.py")), (share_config, _files(share_config, "*")),
                        (script.parent, [script]), (config_file.parent, [config_file])):
        for path in files:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for name in KEY_LIBRARIES:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{name}=={version}\0".encode())
    return digest.hexdigest()


def cache_key(settings_json: Mapping[str, Any], fingerprint: str) -> str:
    """The cache folder name of a base: 16 hex digits of the settings and the code fingerprint."""
    blob = json.dumps({"settings": settings_json, "code": fingerprint}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _copy_folder(source: Path, target: Path) -> None:
    """Replace ``target`` by a copy of ``source``: copied beside it first, the old one renamed aside before the
    copy is renamed in, so a reader sees the old folder, the new one or none, never half of one."""
    partial = target.with_name(f"{target.name}.partial{os.getpid()}")
    aside = target.with_name(f"{target.name}.old{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, partial)
    if target.exists():
        os.replace(target, aside)
    try:
        os.replace(partial, target)
    except OSError:  # another process put it there first (the cache): theirs is the same base
        shutil.rmtree(partial, ignore_errors=True)
        if not target.exists():
            raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _same_weights(a: Path, b: Path) -> bool:
    return (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()


def ensure_base(folder: str | Path, script: str | Path, config_file: str | Path,
                overrides: Mapping[str, Any] | None = None,
                say: Callable[[str], None] = print, shipped: str | Path | None = None) -> Path:
    """The base ``script output=FOLDER [key=value ...]`` would build, in ``folder`` (see the module doc).

    ``config_file``: the script's Hydra config (its settings, with ``overrides`` on top: scalar settings such as
    ``steps=4``, passed as ``key=value`` on the command line). ``shipped``: a base kept with the code (the
    repository's ``assets/pretrained_base``), copied when it was built with these settings. ``say`` gets a line
    for each thing done (reused, copied from the shipped base or the cache; or rebuilt, built, kept in the
    cache). A base already in ``folder`` is used as it is
    and not added to the cache (it may come from other code). Raises ``ValueError`` for an override that is not
    a number, string or bool, ``TrainingConfigError`` for settings the script would refuse (e.g. ``folder`` exists
    and is not a base), ``subprocess.CalledProcessError`` when the command fails; a cache that cannot be written
    is a warning (the base is still built in ``folder``)."""
    folder, script, config_file = Path(folder), Path(script), Path(config_file)
    overrides = dict(overrides or {})
    odd = {k: v for k, v in overrides.items() if not isinstance(v, int | float | str | bool)}
    if odd:
        raise ValueError(f"overrides must be numbers, strings or bools (as on the command line), got {odd}")
    settings = config_settings(config_file, folder, overrides)
    stale = stale_base(folder, settings)
    shipped = Path(shipped) if shipped is not None and stale_base(Path(shipped), settings) is None else None
    if stale is None and (shipped is None or _same_weights(folder, shipped)):
        say(f"pretrained base: {folder} (built before)")
        return folder
    if shipped is not None:  # (also over a base with these settings but other weights: an earlier shipped one)
        _copy_folder(shipped, folder)
        say(f"pretrained base: copied from {shipped} (the repository's, made by `make base`; the tests rebuild it "
            "with the command and require the same bits)")
        return folder
    record = settings_record(settings)
    cached = cache_root() / "pretrained_base" / cache_key(record, code_fingerprint(script, config_file))
    if stale_base(cached, settings) is None:
        _copy_folder(cached, folder)
        say(f"pretrained base: copied from this machine's cache {cached} (built there before with the same "
            f"settings and code; ${CACHE_ENV} moves the cache, deleting it rebuilds)")
        return folder
    if (folder / REPORT_FILE).is_file():  # (the command replaces a base it wrote)
        say(f"rebuilding the base: {stale}")
    command = [sys.executable, str(script), f"output={folder}", *(f"{k}={v}" for k, v in overrides.items())]
    say("building the pretrained base (once per machine): " + " ".join(command[1:]))
    subprocess.run(command, check=True)
    try:
        if stale_base(cached, settings) is not None:  # (another clone may have cached the same base meanwhile)
            _copy_folder(folder, cached)
        say(f"pretrained base: kept in this machine's cache {cached} for the next clone")
    except OSError as err:
        LOG.warning("the pretrained base is in %s but could not be kept in the cache %s (%s); set $%s to a "
                    "writable folder to share it between clones", folder, cached, err, CACHE_ENV)
    return folder
