"""The signboard detector and identifier: keypoints, per-template matching, homographies, NMS.

A real algorithm with real failure modes: blur and darkness erase the corners keypoints are
made of, small signboards have too few of them, occlusion removes some — recall falls as it
would on a real box. Nothing here sees ground truth or scene conditions.
"""

from __future__ import annotations

from dataclasses import dataclass

from labctl_sim.aibox.features import FeatureExtractor, Image, VariantConfig, variant_config
from labctl_sim.aibox.geometry import Instance, find_instances, suppress
from labctl_sim.aibox.matching import TemplateIndex
from labctl_sim.aibox.register import Template

MIN_TEMPLATE_FEATURES = 8
"""Templates with fewer keypoints (e.g. a blank board) cannot be identified and are skipped."""


@dataclass(frozen=True, slots=True)
class Found:
    """One identified signboard in frame pixels."""

    bbox: tuple[float, float, float, float]
    """x, y, width, height (COCO), clipped to the image."""
    score: float
    ref: str
    inliers: int


class SignDetector:
    """Finds the register's signboards in BGR frames.

    Building one extracts every template's features (tens of ms per template); :meth:`detect`
    is then safe to call from one thread at a time.
    """

    def __init__(self, templates: list[Template], variant: str | VariantConfig = "fast") -> None:
        self.config = variant_config(variant)
        self._extractor = FeatureExtractor(self.config)
        usable: list[Template] = []
        features = []
        self.skipped: list[str] = []
        """Register ids the box cannot identify (too plain a template)."""
        for t in templates:
            f = self._extractor.template(t.image)
            if len(f) >= MIN_TEMPLATE_FEATURES:
                usable.append(t)
                features.append(f)
            else:
                self.skipped.append(t.ref)
        if not usable:
            raise ValueError("no template in the register has enough keypoints to match")
        self._refs = [t.ref for t in usable]
        self._sizes = [(int(t.image.shape[1]), int(t.image.shape[0])) for t in usable]
        self._index = TemplateIndex(self.config, features)

    @property
    def refs(self) -> list[str]:
        """Register ids this detector can report."""
        return list(self._refs)

    def detect(self, image: Image) -> list[Found]:
        """Every register signboard found in ``image`` (BGR or grey), best score first."""
        cfg = self.config
        frame = self._extractor.frame(image)
        instances: list[Instance] = []
        for t, matches in self._index.correspondences(frame).items():
            instances += find_instances(
                t, self._sizes[t], matches, cfg.min_inliers, cfg.ransac_px
            )
        height, width = image.shape[:2]
        out = []
        for inst in suppress(instances, cfg.min_inliers):
            x, y, w, h = (v / cfg.frame_scale for v in inst.box)
            x0, y0 = max(0.0, x), max(0.0, y)
            x1, y1 = min(float(width), x + w), min(float(height), y + h)
            if x1 - x0 < 1.0 or y1 - y0 < 1.0:
                continue  # projected entirely outside the frame
            box = (x0, y0, x1 - x0, y1 - y0)
            out.append(Found(box, round(inst.score, 4), self._refs[inst.template], inst.inliers))
        return out
