"""LeRobot feature keys, spelled once: lerobot's own constants and the one image-key function.

The values are lerobot's (``lerobot.utils.constants``: ``OBS_STATE``, ``OBS_IMAGES``, ``ACTION``);
``test_contract`` checks they stay equal. They are restated rather than imported because importing
``lerobot.utils`` imports torch (2.4 s on this project's CPU), which the converter's validator, the simulator
and the recorder do not need. Every module that names a dataset or policy feature imports it from here.
"""

from __future__ import annotations

__all__ = ["ACTION", "IMAGE_SIDE", "OBS_IMAGES", "OBS_STATE", "camera_name_problem", "camera_of", "image_key"]

#: = ``lerobot.utils.constants.OBS_STATE``
OBS_STATE = "observation.state"
#: = ``lerobot.utils.constants.OBS_IMAGES``
OBS_IMAGES = "observation.images"
#: = ``lerobot.utils.constants.ACTION``
ACTION = "action"
_IMAGE_PREFIX = f"{OBS_IMAGES}."


def image_key(camera: str) -> str:
    """The feature key of camera ``camera`` (``observation.images.<camera>``)."""
    return _IMAGE_PREFIX + camera


def camera_of(key: str) -> str | None:
    """The camera name of an image feature key, or None if ``key`` is not one."""
    return key[len(_IMAGE_PREFIX):] if key.startswith(_IMAGE_PREFIX) else None


#: Camera image sides (pixels) the project's tools accept (the simulator's recorder, the tiny checkpoint
#: builder): from thumbnails to 2K; a real Kuavo camera is 480x640.
IMAGE_SIDE = (8, 2048)


def camera_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a camera (it becomes the feature key ``observation.images.<name>`` and a ROS
    name part: letters, digits and underscores, starting with a letter), or None."""
    import re

    if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        return None
    return f"{name!r} is not a camera name (letters, digits and _, starting with a letter)"
