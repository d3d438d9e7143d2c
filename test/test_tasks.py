"""The task list in config/tasks.yaml and its lookups."""

import pytest

from kuavo_smolvla_ros.tasks import TaskCatalog, default_catalog


def test_shipped_task_list_has_the_four_kuavo_tasks():
    catalog = default_catalog()
    assert [(t.id, t.name) for t in catalog] == [
        (1, "moving_grasp"), (2, "weighing"), (3, "placement"), (4, "sorting")]
    assert catalog.get(1).instruction.startswith("Grasp the object from the conveyor belt")
    assert catalog.get(2).instruction.endswith("place it in the designated storage container")
    assert "label facing up in the yellow area" in catalog.get(3).instruction
    assert catalog.get(4).stage_dir == "task4_sorting"
    # Folded YAML keeps single spaces, no newlines.
    assert all("\n" not in t.instruction and "  " not in t.instruction for t in catalog)


@pytest.mark.parametrize("text", ["task2", "TASK2", " weighing ", "2", "package_weighing", "task2_weighing"])
def test_aliases_names_and_ids_resolve(text):
    assert default_catalog().find(text).id == 2


def test_full_instruction_matches_regardless_of_case_and_spacing():
    catalog = default_catalog()
    text = catalog.get(4).instruction.upper().replace(" ", "   ")
    assert catalog.find(text).name == "sorting"


def test_free_text_resolves_to_itself():
    instruction, task = default_catalog().resolve_instruction("  wave   at the camera ")
    assert (instruction, task) == ("wave at the camera", None)
    instruction, task = default_catalog().resolve_instruction("task3")
    assert task.id == 3 and instruction == task.instruction


def test_unknown_task_error_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown task 'task9'; known tasks: 1/moving_grasp"):
        default_catalog().get("task9")


def test_ambiguous_alias_and_malformed_file_are_rejected(tmp_path):
    path = tmp_path / "tasks.yaml"
    path.write_text("tasks:\n  - {id: 1, name: a, instruction: x, aliases: [same]}\n"
                    "  - {id: 2, name: b, instruction: y, aliases: [same]}\n")
    with pytest.raises(ValueError, match="'same' names both task 1 and task 2"):
        TaskCatalog.load(path)
    path.write_text("tasks:\n  - {id: 1, instruction: x}\n")
    with pytest.raises(ValueError, match="task entry 0 is malformed"):
        TaskCatalog.load(path)
    path.write_text("- not a mapping\n")
    with pytest.raises(ValueError, match="expected a mapping with a 'tasks' list"):
        TaskCatalog.load(path)
