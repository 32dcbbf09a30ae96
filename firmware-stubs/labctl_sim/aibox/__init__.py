"""A simulated vendor AI box: a real OpenCV signboard detector/identifier behind labctl/1.

::

    from labctl_sim.aibox import default_boxes, run_boxes

    await run_boxes("127.0.0.1", 1883, Path("data/scenes"), default_boxes(), stop_event)

or ``python -m labctl_sim.aibox --port 1883 --register data/scenes``. The detector alone::

    detector = SignDetector(load_register(Path("data/scenes")), "robust")
    found = detector.detect(cv2.imread("data/scenes/images/000001.jpg"))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labctl_sim.aibox.detector import Found, SignDetector
    from labctl_sim.aibox.device import AiBox
    from labctl_sim.aibox.features import VARIANTS, Variant, VariantConfig
    from labctl_sim.aibox.register import RegisterError, Template, load_register
    from labctl_sim.aibox.run import build_boxes, run_boxes
    from labctl_sim.aibox.spec import (
        BoxOptions,
        BoxSpec,
        BoxStats,
        default_boxes,
        signsight_s1,
        urbaneye_pro,
    )

# Imported on first use: the rig presets (labctl_sim.models) name BoxSpec, and importing the
# device and detector modules eagerly would load OpenCV for every simulated rig and close an
# import cycle (aibox.device → labctl_sim.device → labctl_sim.models → aibox).
_WHERE = {
    "Found": "detector",
    "SignDetector": "detector",
    "AiBox": "device",
    "VARIANTS": "features",
    "Variant": "features",
    "VariantConfig": "features",
    "RegisterError": "register",
    "Template": "register",
    "load_register": "register",
    "build_boxes": "run",
    "run_boxes": "run",
    "BoxOptions": "spec",
    "BoxSpec": "spec",
    "BoxStats": "spec",
    "default_boxes": "spec",
    "signsight_s1": "spec",
    "urbaneye_pro": "spec",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'labctl_sim.aibox' has no attribute {name!r}")
    return getattr(importlib.import_module(f"labctl_sim.aibox.{module}"), name)


__all__ = [
    "VARIANTS",
    "AiBox",
    "BoxOptions",
    "BoxSpec",
    "BoxStats",
    "Found",
    "RegisterError",
    "SignDetector",
    "Template",
    "Variant",
    "VariantConfig",
    "build_boxes",
    "default_boxes",
    "load_register",
    "run_boxes",
    "signsight_s1",
    "urbaneye_pro",
]
