"""Ctrl-C is never lost in a library's bare ``except:`` (:mod:`kuavo_smolvla_ros.interrupts`).

CI once saw ``kuavo-sim-record``, interrupted 0.3 CPU-s after it started, write all its bags and exit 0: the
interrupt came while ruamel.yaml (imported by rosbags when the first bag opens) searched ``sys.path`` for its
optional C extension inside ``try: from _ruamel_yaml import ... except: ...``, which swallowed it (1 run in 120
here with random moments). Every child starts with SIGINT at its default, as in a terminal (CI's shell may
hand it down ignored). The tests below make that moment certain: a ``_ruamel_yaml`` module on
``PYTHONPATH`` raises SIGINT when ruamel.yaml.main looks for it (the only stand-in: the moment of the key press);
the commands, ruamel.yaml and rosbags are the real ones."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from processes import sigint_as_in_a_terminal

BIN = Path(sys.executable).parent

#: ruamel.yaml looks for ``_ruamel_yaml`` twice: in ``ruamel.yaml.cyaml`` (an ImportError there is expected) and
#: in ``ruamel.yaml.main`` under a bare ``except:``. Ctrl-C "arrives" during the second search.
CTRL_C_IN_RUAMEL = """\
import signal
import sys

sys.ruamel_lookups = getattr(sys, "ruamel_lookups", 0) + 1
if sys.ruamel_lookups == 2:
    signal.raise_signal(signal.SIGINT)
raise ImportError("no C extension")
"""


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, preexec_fn=sigint_as_in_a_terminal,
                          **kwargs)


def _env(trigger: Path) -> dict[str, str]:
    trigger.mkdir(exist_ok=True)
    (trigger / "_ruamel_yaml.py").write_text(CTRL_C_IN_RUAMEL)
    path = f"{trigger}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    return os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def test_the_library_really_swallows_the_interrupt(tmp_path):
    """The premise: without the guard, ruamel.yaml's import ends normally although Ctrl-C came (if a new
    ruamel.yaml stops swallowing it, this says so and the stand-in needs another library)."""
    shown = _run([sys.executable, "-c", "import ruamel.yaml.main as m; print('imported', m.CParser)"],
                 env=_env(tmp_path / "trigger"))
    assert shown.returncode == 0 and shown.stdout == "imported None\n", (shown.returncode, shown.stderr[-500:])


def test_kuavo_sim_record_stops_when_a_library_swallowed_the_interrupt(tmp_path):
    """The CI failure, made certain: 130, one line, no bag written (without the guard: 0 and every bag)."""
    output = tmp_path / "bags"
    done = _run([str(BIN / "kuavo-sim-record"), str(output), "--tasks", "1", "--episodes", "2"],
                env=_env(tmp_path / "trigger"))
    assert done.returncode == 130, (done.returncode, done.stdout, done.stderr[-2000:])
    assert done.stderr == (f"interrupted: 0 bag(s) written under {output}; the same command again records the "
                           "rest\n"), done.stderr
    assert done.stdout == "" and not list(output.rglob("episode_*"))


def test_the_converter_stops_when_a_library_swallowed_the_interrupt(tmp_path):
    from kuavo_smolvla_ros.sim.record import record
    from kuavo_smolvla_ros.tasks import default_catalog

    task = default_catalog().get("1")
    record(tmp_path / "bags", [task], 1, progress=False)
    output = tmp_path / "dataset"
    done = _run([str(BIN / "kuavo-rosbag-to-lerobot"), "convert", str(tmp_path / "bags" / task.stage_dir),
                           "-o", str(output), "--task", "1", "--png"],
                env=_env(tmp_path / "trigger"))
    assert done.returncode == 130, (done.returncode, done.stdout, done.stderr[-2000:])
    assert done.stderr.strip().splitlines() == ["interrupted: 0 of 1 bag(s) done, resume with --resume"], done.stderr
    assert not (output / "data").exists()


def _python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-c", textwrap.dedent(code)], **kwargs)


SWALLOWER = """\
import signal
try:
    signal.raise_signal(signal.SIGINT)  # Ctrl-C while this module imports
except:  # noqa: E722  (what some libraries do around optional imports)
    pass
"""


@pytest.mark.parametrize("guarded", [True, False])
def test_an_import_that_swallowed_a_sigint_raises_it_again(tmp_path, guarded):
    (tmp_path / "swallower.py").write_text(SWALLOWER)
    shown = _python(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from kuavo_smolvla_ros import interrupts
        print("installed", interrupts.guard() if {guarded} else False)
        try:
            import swallower
            print("imported; interrupts", interrupts.received())
        except KeyboardInterrupt:
            print("KeyboardInterrupt at the import; interrupts", interrupts.received())
        """)
    assert shown.returncode == 0, shown.stderr[-2000:]
    expected = ("installed True\nKeyboardInterrupt at the import; interrupts 1\n" if guarded
                else "installed False\nimported; interrupts 0\n")
    assert shown.stdout == expected


def test_other_threads_imports_never_raise_it(tmp_path):
    """A SIGINT that comes while another thread imports is the main thread's (Python runs signal handlers
    there): the other thread's import ends normally, after the main thread got the KeyboardInterrupt."""
    (tmp_path / "slow_module.py").write_text(
        "import signal, sys, threading\nsignal.pthread_kill(threading.main_thread().ident, signal.SIGINT)\n"
        "assert sys.modules['__main__'].handled.wait(30)  # the import ends after the main thread's handler ran\n"
        "VALUE = 7\n")
    shown = _python(f"""
        import sys, threading
        sys.path.insert(0, {str(tmp_path)!r})
        from kuavo_smolvla_ros import interrupts
        assert interrupts.guard()
        handled, loaded = threading.Event(), threading.Event()
        result = []
        def load():
            try:
                import slow_module
                result.append(slow_module.VALUE)
            except BaseException as err:
                result.append(type(err).__name__)
            loaded.set()
        worker = threading.Thread(target=load)
        try:
            worker.start()
            loaded.wait(30)
            print("no interrupt")
        except KeyboardInterrupt:
            handled.set()
            loaded.wait(30)  # (not a second join: a join the interrupt cut short may return at once)
            print("main thread interrupted; worker imported", result, "interrupts", interrupts.received())
        """)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stdout == "main thread interrupted; worker imported [7] interrupts 1\n"


@pytest.mark.parametrize(("modules", "expected"), [
    # swallowed two imports deep, under a second bare except: raised at the first import that ends normally
    ({"outer": "try:\n    import swallower\nexcept:  # noqa: E722\n    pass\nDONE = 1\n"}, "KeyboardInterrupt"),
    # swallowed, then the import fails and the caller expects that: the interrupt comes first
    ({"failing": SWALLOWER + "raise ImportError('optional part missing')\n",
      "outer": "try:\n    import failing\nexcept ImportError:\n    pass\n"}, "KeyboardInterrupt"),
])
def test_a_swallowed_interrupt_survives_nested_and_failing_imports(tmp_path, modules, expected):
    (tmp_path / "swallower.py").write_text(SWALLOWER)
    for name, text in modules.items():
        (tmp_path / f"{name}.py").write_text(text)
    shown = _python(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from kuavo_smolvla_ros import interrupts
        assert interrupts.guard()
        try:
            import outer
            print("imported")
        except KeyboardInterrupt as err:
            print("KeyboardInterrupt", "from ImportError" if isinstance(err.__cause__, ImportError) else "")
        """)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stdout.split()[0] == expected
    assert ("from ImportError" in shown.stdout) == ("failing" in modules)


def test_training_scripts_stop_when_the_checks_swallowed_the_interrupt(tmp_path):
    """``help_or_run``: Ctrl-C swallowed while the config's checks run (they open the datasets): the job never
    starts, one line, 130; swallowed while the job runs: it ends, then 130 with one line."""
    (tmp_path / "job.yaml").write_text("value: 1\n")
    for where, expected in [("check", "interrupted (Ctrl-C): nothing started\n"),
                            ("main", "job ran\ninterrupted (Ctrl-C) after the job was done\n")]:
        shown = _python(f"""
            import signal, sys
            from pathlib import Path
            from kuavo_smolvla_ros.training.cli import help_or_run
            def swallow():
                try:
                    signal.raise_signal(signal.SIGINT)
                except:  # noqa: E722
                    pass
            def check(cfg, configs):
                if {where!r} == "check":
                    swallow()
            def main():
                print("job ran", flush=True)
                if {where!r} == "main":
                    swallow()
            sys.argv = ["job", "value=2"]
            help_or_run(main, Path({str(tmp_path / "job.yaml")!r}), "usage", "doc", check,
                        interrupted="interrupted (Ctrl-C): nothing started")
            print("exit 0")
            """)
        assert (shown.returncode, shown.stdout + shown.stderr) == (130, expected), shown.stderr[-2000:]


def test_a_node_whose_construction_swallowed_the_interrupt_is_not_spun(tmp_path):
    """``spin_node``: Ctrl-C swallowed by a library while the node is built (rclpy's handler installed):
    130, the node never spins."""
    shown = _python("""
        import signal
        from rclpy.node import Node
        from kuavo_smolvla_ros.ros.spin import spin_node
        def make_node():
            node = Node("swallowing_node")
            try:
                signal.raise_signal(signal.SIGINT)
            except:  # noqa: E722
                pass
            node.create_timer(0.01, lambda: print("spun", flush=True))
            return node
        print("exit", spin_node(make_node))
        """, env=os.environ | {"ROS_DOMAIN_ID": "77", "ROS_LOCALHOST_ONLY": "1"})
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stdout == "exit 130\n", shown.stdout


def test_the_guard_leaves_an_ignored_or_owned_sigint_alone():
    shown = _python("""
        import builtins, signal, threading
        from kuavo_smolvla_ros import interrupts
        before = builtins.__import__
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job of a non-interactive shell
        ignored = interrupts.guard()
        signal.signal(signal.SIGINT, lambda *a: None)  # someone else's handler
        owned = interrupts.guard()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        off_main = []
        worker = threading.Thread(target=lambda: off_main.append(interrupts.guard()))
        worker.start(); worker.join(30)
        untouched = builtins.__import__ is before
        print(ignored, owned, off_main, untouched, interrupts.guard(), interrupts.guard(),
              signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        """)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stdout == "False False [False] True True True False\n"


def test_a_command_that_finished_after_a_swallowed_interrupt_exits_130(tmp_path):
    """Swallowed outside any import (a library's bare except at run time): the work runs to its end, and the
    exit status still tells the caller (a shell script) that the user asked to stop."""
    (tmp_path / "finisher.py").write_text(
        "import signal\n\ndef main():\n" + textwrap.indent(SWALLOWER.replace("import signal\n", ""), "    ")
        + "    print('work done')\n    return 0\n")
    shown = _python(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from kuavo_smolvla_ros import entry
        raise SystemExit(entry.run("finisher", "finisher"))
        """)
    assert (shown.returncode, shown.stdout, shown.stderr) == (130, "work done\n",
                                                              "finisher: interrupted after its work was done\n")
