"""What the Hydra front ends in ``training/`` share: a resolved config in, one ``error:`` line and exit code 2
for a configuration or training problem (no traceback), the run's own result otherwise.

Before Hydra runs (and creates its log folder under the output folder), :func:`help_or_run` composes the
config itself and checks it (an unknown config name, an override Hydra refuses, a value of the wrong type, a
missing teacher, checkpoint or dataset), so such a mistake ends in one line, exit code 2 and no folder; a run
that fails later removes the log folder Hydra made for it, and the folders above it that it created.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kuavo_smolvla_ros import interrupts

#: Ancestors of Hydra's run folder that did not exist before this run (deepest first), set by help_or_run.
_CREATED: list[Path] = []
#: Hydra's own files in its run folder: the job's log and the .hydra/ config copies.
_HYDRA_FILES = (".hydra",)


def run_or_exit(run: Callable[[dict, Path], Any], cfg, configs_dir: Path) -> Any:
    """``run(cfg as a plain dict, configs_dir)``; a known error prints ``error: ...`` and exits with 2."""
    quiet_libraries()
    from omegaconf import OmegaConf

    from kuavo_smolvla_ros.policy.checkpoint import CheckpointError
    from kuavo_smolvla_ros.training.common.errors import TrainingConfigError, TrainingError

    try:
        return run(OmegaConf.to_container(cfg, resolve=True), configs_dir)
    except (TrainingConfigError, TrainingError, CheckpointError) as err:
        if isinstance(err, TrainingConfigError | CheckpointError):  # a failed start leaves no folder behind
            _remove_hydra_folder()
        print(f"error: {_one_line(err)}", file=sys.stderr)
        sys.exit(2)


def quiet_libraries() -> None:
    """Work offline and keep the datasets library's per-episode "Map"/"Generating train split" bars out of the
    log (they would bury the per-epoch lines); call before anything imports ``datasets`` (it reads the
    variable at import)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    import warnings

    # lerobot re-enables the bars per dataset it opens; the variable wins, and datasets warns each time
    warnings.filterwarnings("ignore", message="Cannot enable progress bars")


def _one_line(err: BaseException) -> str:
    """``err``'s message on one line (a multi-line message's lines joined)."""
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__


def _remove_hydra_folder() -> None:
    """Remove the run folder Hydra created for this run when it holds nothing but Hydra's own files (its log and
    .hydra/), then the folders above it that this run created, while they are empty."""
    import shutil

    try:
        from hydra.core.hydra_config import HydraConfig

        run_dir = Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # not under Hydra (a test calling run_or_exit directly)
        return
    if run_dir.is_dir() and all(p.name in _HYDRA_FILES or p.suffix == ".log" for p in run_dir.iterdir()):
        import logging

        logging.shutdown()  # the log file's handler lets go of it
        shutil.rmtree(run_dir, ignore_errors=True)
    for folder in _CREATED:
        try:
            folder.rmdir()  # only if empty
        except OSError:
            break


def _hydra_overrides(args: list[str]) -> list[str] | None:
    """The KEY=VALUE overrides of a command line, or None when it has flags other than the config name (Hydra's
    own modes, --cfg, -m ...: left to Hydra)."""
    overrides, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("--config-name", "-cn"):
            skip = True
            continue
        if arg.startswith(("--config-name=", "-cn=")):
            continue
        if arg.startswith("-"):
            return None
        overrides.append(arg)
    return overrides


def _compose(config: Path, overrides: list[str]):
    """The config ``config`` with ``overrides`` as Hydra composes it (Hydra's own section included), or
    :class:`TrainingConfigError` with Hydra's reason on one line."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from kuavo_smolvla_ros.training.common.errors import TrainingConfigError

    try:
        with initialize_config_dir(config_dir=str(config.parent), version_base="1.3"):
            return compose(config_name=config.stem, overrides=overrides, return_hydra_config=True)
    except Exception as err:  # hydra's override, composition and missing-key errors
        message = _one_line(err)
        bare = [o for o in overrides if "=" not in o and not o.startswith("~")]
        if bare and "missing EQUAL" in message:
            raise TrainingConfigError(
                f"{bare[0]!r} is not a setting: settings are KEY=VALUE (e.g. batch_size=32); a config is chosen "
                "with --config-name NAME (--help lists the settings)") from None
        if "To append to your config use +" in message or "not in struct" in message:
            key = next((o.split("=", 1)[0].lstrip("+~") for o in overrides if o.split("=", 1)[0] in message), None)
            message = f"{key or 'an override'}: no such setting in {config.name} (--help lists the settings)"
        raise TrainingConfigError(message) from None
    finally:
        GlobalHydra.instance().clear()


def _missing_ancestors(cfg) -> list[Path]:
    """The folders above Hydra's run folder (``hydra.run.dir``) that do not exist yet, deepest first."""
    from hydra.core.utils import setup_globals
    from omegaconf import OmegaConf

    setup_globals()  # the ${now:...} resolver
    try:
        run_dir = Path(str(OmegaConf.select(cfg, "hydra.run.dir"))).absolute()
    except Exception:
        return []
    return [folder for folder in run_dir.parents if not folder.exists()]


def check_first(config: Path, check: Callable[[dict, Path], Any]) -> None:
    """Compose ``config`` with the command line's overrides as Hydra will and run ``check(resolved config
    without Hydra's section, configs dir)`` on it; a problem prints ``error: ...`` and exits with 2 before
    Hydra creates anything. Records the folders Hydra's run folder will create (removed if the run fails to
    start). A command line with Hydra's own flags is left to Hydra."""
    overrides = _hydra_overrides(sys.argv[1:])
    if overrides is None:
        return
    from omegaconf import OmegaConf

    from kuavo_smolvla_ros.policy.checkpoint import CheckpointError
    from kuavo_smolvla_ros.training.common.errors import TrainingConfigError

    try:
        cfg = _compose(config, overrides)
        added = [o.lstrip("+").split("=", 1)[0] for o in overrides if o.startswith("+")]
        base = _compose(config, []) if added else None
        unknown = [key for key in added if "." not in key and key not in base]  # (+a.b: the checks of a)
        if unknown:
            raise TrainingConfigError(f"+{unknown[0]}: no such setting in {config.name} (--help lists the settings)")
        _CREATED[:] = _missing_ancestors(cfg)
        plain = OmegaConf.to_container(cfg, resolve=False)
        plain.pop("hydra", None)
        try:
            plain = OmegaConf.to_container(OmegaConf.create(plain), resolve=True)
        except Exception as err:  # an interpolation that does not resolve
            raise TrainingConfigError(_one_line(err)) from None
        given = {o.split("=", 1)[0] for o in overrides}
        if "task" in given and "stages" in plain and plain.get("stages") == "all":  # (train_sequential)
            raise TrainingConfigError(f"task={plain.get('task')} with stages=all: every stage of the curriculum is "
                                      "trained and task is not used; add stages=one to train that stage alone")
        check(plain, config.parent)
    except (TrainingConfigError, CheckpointError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        sys.exit(2)


def _settings(config: Path) -> list[list]:
    """[dotted key, value text, comment lines] of every setting in ``config`` (Hydra's ``hydra:`` section and
    the ``defaults`` list left out; comment lines under a setting continue its text)."""
    import re

    stack, entries = [], []
    for line in config.read_text().splitlines():
        if not line.strip():
            continue
        if line.lstrip().startswith("#"):
            if entries and line.startswith(" " * 20):  # a comment continued under the previous setting
                entries[-1][2].append(line.strip().lstrip("#").strip())
            continue
        match = re.match(r"^( *)([A-Za-z_][\w-]*):\s*(.*?)\s*(?:#\s*(.*))?$", line)
        if not match:
            continue
        indent, key, value, comment = len(match[1]), match[2], match[3], match[4] or ""
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        dotted = ".".join(k for _, k in stack)
        if dotted.split(".")[0] in ("hydra", "defaults"):
            continue
        entries.append([dotted, value, [comment] if comment else []])
    return entries


def _config_chain(config: Path) -> list[Path]:
    """``config`` after the configs its ``defaults`` list names (the order Hydra composes them in)."""
    import yaml

    defaults = (yaml.safe_load(config.read_text()) or {}).get("defaults") or []
    bases = [config.parent / f"{d}.yaml" for d in defaults if isinstance(d, str) and d != "_self_"]
    return [p for base in bases if base.is_file() for p in _config_chain(base)] + [config]


TRAINING_EXIT_CODES = """exit status:
  0  done: the last lines list every checkpoint written
  1  an unexpected failure (the traceback says where); checkpoints written before stay as they are
  2  one "error:" line: refused before anything starts (an unknown setting or config, a bad value, a missing
     dataset or checkpoint, an output that would overwrite another run), or a non-finite loss stopped
     training (the last good checkpoint is kept)
  130  interrupted (Ctrl-C): one "interrupted" line says what is kept and how to go on"""
#: What a stopped run leaves (the line printed on Ctrl-C) for the runs that write ``last/`` with its training state.
RESUMABLE = ("interrupted (Ctrl-C): run the same command again to resume from the last checkpoint saved as last/; "
             "the checkpoints written so far stay as they are")


def config_help(config: Path, usage: str, doc: str) -> str:
    """``--help`` for a Hydra training script, made from its config file(s): every setting (dotted, as it is
    overridden on the command line) with its default and the comment beside it in the YAML; a config built on
    others (``defaults``) shows theirs with its own values and comments on top."""
    import textwrap

    merged: dict[str, list] = {}
    for path in _config_chain(config):
        for dotted, value, comment in _settings(path):
            if dotted in merged:
                merged[dotted][1] = value or merged[dotted][1]
                merged[dotted][2] = comment or merged[dotted][2]
            else:
                merged[dotted] = [dotted, value, comment]
    rows = []
    for dotted, value, comment in merged.values():
        rows.append(f"  {dotted} = {value}" if value else f"  {dotted}:")
        if comment:
            rows += textwrap.wrap(" ".join(comment), 100, initial_indent=" " * 8, subsequent_indent=" " * 8)
    return (f"usage: {usage} [KEY=VALUE ...]\n\n{doc.strip()}\n\nsettings ({config.relative_to(config.parents[2])}; "
            "set any as KEY=VALUE, nested ones as a.b=VALUE; --hydra-help: Hydra's own options):\n" + "\n".join(rows)
            + "\n\n" + TRAINING_EXIT_CODES)


def _known_configs(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _help_or_run(main: Callable[[], Any], config: Path, usage: str, doc: str,
                 check: Callable[[dict, Path], Any] | str | None) -> Any:
    quiet_libraries()  # (before the checks: they open the datasets)
    args = sys.argv[1:]
    for flag in ("--config-name", "-cn"):
        named = [a.split("=", 1)[1] for a in args if a.startswith(flag + "=")]
        named += [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag]
        if named:
            config = config.parent / f"{named[-1].removesuffix('.yaml')}.yaml"
    if not config.is_file():
        print(f"error: no config {config} (--config-name: one of {_known_configs(config.parent)})", file=sys.stderr)
        sys.exit(2)
    if {"--help", "-h"} & set(args):
        try:
            print(config_help(config, usage, doc), flush=True)
        except BrokenPipeError:  # `--help | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    if isinstance(check, str):  # "module:function", imported only now (after --help, inside the Ctrl-C handler)
        import importlib

        module, name = check.split(":")
        check = getattr(importlib.import_module(module), name)
    if check is not None:
        check_first(config, check)
    interrupts.raise_if_received()  # (Ctrl-C a library swallowed while the checks read the datasets)
    return main()


def help_or_run(main: Callable[[], Any], config: Path, usage: str, doc: str,
                check: Callable[[dict, Path], Any] | str | None = None, interrupted: str = RESUMABLE) -> Any:
    """Print :func:`config_help` (of the ``--config-name``/``-cn`` config when one is given) and exit 0 on
    ``--help``/``-h``; else check the config first (:func:`check_first`, with ``check``: a function or its
    ``"module:function"`` name, imported after the help) and run the Hydra
    ``main``. An unknown config name prints one ``error:`` line (with the known ones) and exits with 2; Ctrl-C
    prints ``interrupted`` and exits with 130 (also when the job ended although Ctrl-C was pressed: a library
    swallowed it)."""
    try:  # Ctrl-C at any moment (the checks' imports included): one line, 130
        interrupts.guard()  # (an interrupt a library swallows while it imports is raised again)
        result = _help_or_run(main, config, usage, doc, check)
        done_after_interrupt = bool(interrupts.received())  # (swallowed by a library at run time)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        sys.exit(130)
    if done_after_interrupt:  # the job ended, but the caller asked to stop
        print("interrupted (Ctrl-C) after the job was done", file=sys.stderr)
        sys.exit(130)
    return result
