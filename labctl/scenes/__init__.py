"""Synthetic street scenes with registered signboards and COCO ground truth.

``make_dataset`` renders a dataset directory (``register.json`` + templates, JPEG scenes,
``annotations.json``); ``load_dataset`` reads and validates one. See ``docs/scenes.md``.
"""

from labctl.scenes.coco import CocoAnnotation, CocoGroundTruth, CocoImage
from labctl.scenes.conditions import (
    ConditionPlan,
    Conditions,
    ConditionsError,
    parse_conditions,
)
from labctl.scenes.dataset import Dataset, DatasetError, load_dataset, make_dataset
from labctl.scenes.register import (
    Register,
    RegisterError,
    Signboard,
    generate_register,
    load_register,
)
from labctl.scenes.render import Scene, SceneError, render_scene

__all__ = [
    "CocoAnnotation",
    "CocoGroundTruth",
    "CocoImage",
    "ConditionPlan",
    "Conditions",
    "ConditionsError",
    "Dataset",
    "DatasetError",
    "Register",
    "RegisterError",
    "Scene",
    "SceneError",
    "Signboard",
    "generate_register",
    "load_dataset",
    "load_register",
    "make_dataset",
    "parse_conditions",
    "render_scene",
]
