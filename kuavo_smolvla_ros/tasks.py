"""The task list (``config/tasks.yaml``): ids, names, instructions and aliases of the four tasks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from kuavo_smolvla_ros.resources import share_file


def normalize_text(text: str) -> str:
    """Lower-case ``text`` and collapse whitespace, for matching instructions and aliases."""
    return re.sub(r"\s+", " ", text).strip().lower()


@dataclass(frozen=True)
class Task:
    """One task: ``id`` 1..4, short ``name``, the exact training ``instruction`` and ``aliases``."""

    id: int
    name: str
    instruction: str
    aliases: tuple[str, ...] = field(default=())

    @property
    def stage_dir(self) -> str:
        """Folder name of this task's training stage, e.g. ``task2_weighing``."""
        return f"task{self.id}_{self.name}"


class TaskCatalog:
    """The tasks of one ``tasks.yaml``, with lookup by id, name, alias or instruction text."""

    def __init__(self, tasks: list[Task]):
        if not tasks:
            raise ValueError("the task list is empty")
        self.tasks = tuple(sorted(tasks, key=lambda t: t.id))
        self._index: dict[str, Task] = {}
        for task in self.tasks:
            for key in (str(task.id), task.name, task.instruction, task.stage_dir, *task.aliases):
                norm = normalize_text(key)
                other = self._index.get(norm)
                if other is not None and other is not task:
                    raise ValueError(f"{key!r} names both task {other.id} and task {task.id}")
                self._index[norm] = task

    @classmethod
    def load(cls, path: str | Path | None = None) -> TaskCatalog:
        """Read a tasks file (default: the installed ``config/tasks.yaml``)."""
        path = Path(path) if path is not None else share_file("config/tasks.yaml")
        data = yaml.safe_load(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
            raise ValueError(f"{path}: expected a mapping with a 'tasks' list")
        tasks = []
        for i, entry in enumerate(data["tasks"]):
            try:
                tasks.append(Task(
                    id=int(entry["id"]),
                    name=str(entry["name"]),
                    instruction=" ".join(str(entry["instruction"]).split()),
                    aliases=tuple(str(a) for a in entry.get("aliases", ())),
                ))
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{path}: task entry {i} is malformed ({err!r})") from None
        return cls(tasks)

    def __iter__(self):
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def find(self, text: str) -> Task | None:
        """The task ``text`` names (id, name, alias, stage folder or full instruction), else None."""
        return self._index.get(normalize_text(text))

    def get(self, text: str | int) -> Task:
        """Like :meth:`find` but raises ``KeyError`` with the known names when nothing matches."""
        task = self.find(str(text))
        if task is None:
            names = ", ".join(f"{t.id}/{t.name}" for t in self.tasks)
            raise KeyError(f"unknown task {text!r}; known tasks: {names}")
        return task

    def resolve_instruction(self, text: str) -> tuple[str, Task | None]:
        """The instruction to condition on for ``text``: a task's full text, or ``text`` itself."""
        task = self.find(text)
        return (task.instruction, task) if task else (" ".join(text.split()), None)

    @property
    def instructions(self) -> list[str]:
        return [t.instruction for t in self.tasks]


@lru_cache(maxsize=1)
def default_catalog() -> TaskCatalog:
    """The installed task list, read once."""
    return TaskCatalog.load()
