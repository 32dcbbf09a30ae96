"""Synthetic street scenes: determinism, ground truth where the pixels are, conditions as
recorded, the dataset directory and its CLI, and pycocotools reading the result."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from labctl.cli.main import cli
from labctl.scenes import (
    ConditionPlan,
    Conditions,
    ConditionsError,
    DatasetError,
    Register,
    generate_register,
    load_dataset,
    load_register,
    make_dataset,
    parse_conditions,
    render_scene,
)
from labctl.scenes.conditions import DEFAULT_SWEEPS

SMALL = (640, 360)


@pytest.fixture(scope="module")
def register() -> Register:
    return generate_register(11)


def _scene(register: Register, cond: Conditions, seed: int, draw: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return render_scene(register, cond, rng, (1280, 720), draw_signboards=draw).image


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _words(output: str) -> str:
    """Console output with its line wrapping undone."""
    return " ".join(output.split())


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    a = make_dataset(tmp_path / "a", 6, seed=42, conditions="sample", size=SMALL)
    b = make_dataset(tmp_path / "b", 6, seed=42, conditions="sample", size=SMALL)
    c = make_dataset(tmp_path / "c", 6, seed=43, conditions="sample", size=SMALL)
    files_a, files_b, files_c = _files(a.root), _files(b.root), _files(c.root)
    assert len(files_a) == 1 + 12 + 6 + 1  # register.json, templates, images, annotations
    assert files_a == files_b
    assert files_a["annotations.json"] != files_c["annotations.json"]
    differing = [k for k in files_a if k.startswith("images/") and files_a[k] != files_c[k]]
    assert len(differing) == 6
    assert files_a["register.json"] != files_c["register.json"]


def test_worker_processes_change_nothing(tmp_path: Path) -> None:
    one = make_dataset(tmp_path / "one", 20, seed=5, conditions="sample", size=SMALL)
    two = make_dataset(tmp_path / "two", 20, seed=5, conditions="sample", size=SMALL, jobs=2)
    assert _files(one.root) == _files(two.root)


# --- ground truth is where the pixels are ------------------------------------------------------


@pytest.mark.parametrize(
    "cond",
    [
        Conditions(),
        Conditions(angle=50, size=40),
        Conditions(angle=30, size=20),
        Conditions(angle=65, size=150),
    ],
    ids=["frontal", "turned-small", "turned-tiny", "steep-large"],
)
def test_boxes_bound_exactly_the_pixels_the_signboards_changed(
    register: Register, cond: Conditions
) -> None:
    for seed in range(4):
        with_sb = render_scene(register, cond, np.random.default_rng(seed), (1280, 720))
        without = _scene(register, cond, seed, draw=False)
        changed = np.any(with_sb.image != without, axis=2)
        near_a_box = np.zeros_like(changed)
        for sb in with_sb.signboards:
            x, y, w, h = sb.bbox
            x0, y0 = max(0, int(x) - 4), max(0, int(y) - 4)
            x1, y1 = int(np.ceil(x + w)) + 4, int(np.ceil(y + h)) + 4
            near_a_box[y0:y1, x0:x1] = True
            ys, xs = np.nonzero(changed[y0:y1, x0:x1])
            drawn = (xs.min() + x0, ys.min() + y0, xs.max() + x0 + 1, ys.max() + y0 + 1)
            np.testing.assert_allclose(drawn, (x, y, x + w, y + h), atol=1.5)
        assert with_sb.signboards
        assert not (changed & ~near_a_box).any(), "pixels changed outside every box"


def test_written_jpegs_show_the_registered_template_inside_each_box(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", 8, seed=9, conditions="benign")
    templates = ds.register.templates
    checked = 0
    for image in ds.images:
        pixels = cv2.imread(str(ds.root / image.file_name))
        for ann in ds.annotations_for(image.id):
            x, y, w, h = (round(v) for v in ann.bbox)
            crop = pixels[y : y + h, x : x + w].astype(np.float32)
            # Which template looks most like the crop? It must be the annotated one.
            distance = {
                sb_id: float(
                    np.abs(cv2.resize(t, (w, h), interpolation=cv2.INTER_AREA) - crop).mean()
                )
                for sb_id, t in templates.items()
            }
            right = distance.pop(ann.register_id)
            # Sub-pixel placement and JPEG blur the edges a little; another shop is far off.
            assert right < 20.0
            assert right < min(distance.values()) / 3
            checked += 1
    assert checked >= 8


def test_the_smallest_signboard_is_as_tall_as_recorded(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", 8, seed=4, conditions="size=16,32,64,128")
    for image in ds.images:
        heights = [a.bbox[3] for a in ds.annotations_for(image.id)]
        assert min(heights) == pytest.approx(image.conditions.size, abs=0.01)
        for ann in ds.annotations_for(image.id):
            assert ann.area == pytest.approx(ann.bbox[2] * ann.bbox[3], abs=0.01)


# --- conditions are what was applied ----------------------------------------------------------


def test_sharpness_falls_as_blur_rises(register: Register) -> None:
    sharpness = [
        cv2.Laplacian(
            cv2.cvtColor(_scene(register, Conditions(blur=s), 3), cv2.COLOR_BGR2GRAY), cv2.CV_64F
        ).var()
        for s in DEFAULT_SWEEPS["blur"]
    ]
    assert all(a > b for a, b in itertools.pairwise(sharpness)), sharpness
    assert sharpness[-1] < 0.1 * sharpness[0]


def test_brightness_falls_as_light_falls(register: Register) -> None:
    means = [_scene(register, Conditions(light=v), 3).mean() for v in DEFAULT_SWEEPS["light"]]
    assert all(a > b for a, b in itertools.pairwise(means)), means
    assert means[-1] < 0.35 * means[0]


@pytest.mark.parametrize("sigma", [5.0, 20.0])
def test_noise_has_the_recorded_sigma(register: Register, sigma: float) -> None:
    clean = _scene(register, Conditions(), 8).astype(np.float64)
    noisy = _scene(register, Conditions(noise=sigma), 8).astype(np.float64)
    unclipped = (clean > 3 * sigma) & (clean < 255 - 3 * sigma)
    residual = (noisy - clean)[unclipped]
    assert residual.std() == pytest.approx(sigma, rel=0.03)
    assert abs(residual.mean()) < 0.1


def test_rain_adds_streaks_in_proportion(register: Register) -> None:
    clean = _scene(register, Conditions(), 2).astype(np.float64)
    change = [
        np.abs(_scene(register, Conditions(rain=r), 2) - clean).mean() for r in (0.25, 0.5, 1.0)
    ]
    assert 0 < change[0] < change[1] < change[2]


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.6])
def test_recorded_occlusion_is_the_share_of_signboard_pixels_covered(
    register: Register, fraction: float
) -> None:
    shares = []
    for seed in range(3):
        base = Conditions(size=64)
        blocked = base.model_copy(update={"occlusion": fraction})
        scene = render_scene(register, blocked, np.random.default_rng(seed), (1280, 720))
        clear = _scene(register, base, seed)
        bare = _scene(register, base, seed, draw=False)
        sign_pixels = np.any(clear != bare, axis=2)
        hidden = np.any(scene.image != clear, axis=2)
        for sb in scene.signboards:
            x, y, w, h = (int(v) for v in sb.bbox)
            own = sign_pixels[y : y + h + 1, x : x + w + 1]
            measured = (own & hidden[y : y + h + 1, x : x + w + 1]).sum() / own.sum()
            assert measured == pytest.approx(sb.occlusion, abs=0.04)
            assert sb.occlusion >= fraction - 0.02
            shares.append(sb.occlusion)
    assert np.median(shares) == pytest.approx(fraction, abs=0.02)


def test_turned_signboards_are_narrower(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", 10, seed=1, conditions="angle=0,65")
    ratio: dict[float, list[float]] = {0.0: [], 65.0: []}
    for image in ds.images:
        for ann in ds.annotations_for(image.id):
            ratio[image.conditions.angle].append(ann.bbox[2] / ann.bbox[3])
    assert max(ratio[65.0]) < min(ratio[0.0])


def test_grid_varies_one_condition_at_a_time() -> None:
    plan = parse_conditions("grid")
    baseline = Conditions().model_dump()
    points = plan.grid_points()
    assert len(points) == plan.grid_size() == sum(len(v) for v in DEFAULT_SWEEPS.values())
    for point in points:
        changed = {k for k, v in point.model_dump().items() if v != baseline[k]}
        assert len(changed) <= 1
    for name, values in DEFAULT_SWEEPS.items():
        assert sorted({getattr(p, name) for p in points}) == sorted(values)
    assert plan.conditions_for(len(points) + 3, seed=0) == points[3]


def test_sampled_conditions_are_reproducible_and_within_range() -> None:
    plan = parse_conditions("sample")
    drawn = [plan.conditions_for(i, seed=7) for i in range(200)]
    assert drawn == [plan.conditions_for(i, seed=7) for i in range(200)]
    assert drawn != [plan.conditions_for(i, seed=8) for i in range(200)]
    for name, values in DEFAULT_SWEEPS.items():
        got = [getattr(c, name) for c in drawn]
        assert min(values) - 0.05 <= min(got) and max(got) <= max(values) + 0.05
        assert len(set(got)) > 20


def test_condition_specs_inline_mapping_and_file(tmp_path: Path) -> None:
    inline = parse_conditions("blur=0,2,4; light=1,0.3")
    assert inline.effective_sweeps() == {"blur": (0.0, 2.0, 4.0), "light": (1.0, 0.3)}
    assert [p.blur for p in inline.grid_points()] == [0.0, 0.0, 2.0, 0.0, 4.0]
    assert parse_conditions({"blur": [1, 2]}).effective_sweeps() == {"blur": (1.0, 2.0)}
    spec = tmp_path / "c.yaml"
    spec.write_text("mode: sample\nranges:\n  blur: [0, 1]\nbaseline:\n  size: 40\n")
    from_file = parse_conditions(str(spec))
    assert from_file.mode == "sample" and from_file.baseline.size == 40
    assert all(from_file.conditions_for(i, 1).blur <= 1 for i in range(50))
    assert parse_conditions("benign") == ConditionPlan(mode="benign")


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("blur=-1", "greater than or equal to 0"),
        ("fog=1", "fog"),
        ("blur=a", "not a number"),
        ("nonsense", "neither grid, sample, benign"),
        ({"blur": [1], "mode": "grid"}, "blur"),
    ],
)
def test_bad_condition_specs_are_explained(spec: object, words: str) -> None:
    with pytest.raises(ConditionsError, match=words):
        parse_conditions(spec)  # type: ignore[arg-type]


# --- the dataset directory ---------------------------------------------------------------------


def test_pycocotools_reads_the_ground_truth_and_scores_it_perfect(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", 10, seed=2, conditions="sample", size=SMALL)
    gt = COCO(str(ds.annotations_path))
    assert sorted(gt.getImgIds()) == [i.id for i in ds.images]
    assert len(gt.getAnnIds()) == len(ds.ground_truth.annotations) > 0
    assert gt.loadCats(gt.getCatIds()) == [{"id": 1, "name": "signboard"}]
    dets = [
        {"image_id": a.image_id, "category_id": 1, "bbox": list(a.bbox), "score": 0.9}
        for a in ds.ground_truth.annotations
    ]
    evaluation = COCOeval(gt, gt.loadRes(dets), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)  # AP@[.5:.95]
    assert evaluation.stats[1] == pytest.approx(1.0)  # AP50


def test_dataset_files_follow_the_shared_format(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", 3, seed=3)
    doc = json.loads((ds.root / "annotations.json").read_text())
    assert doc["info"]["seed"] == 3 and doc["info"]["generator"] == "labctl-scenes/1"
    image = doc["images"][0]
    assert image["file_name"] == "images/000001.jpg"
    assert (image["width"], image["height"]) == (1280, 720)
    assert set(image["conditions"]) == {
        "light", "blur", "noise", "rain", "occlusion", "angle", "size"
    }  # fmt: skip
    ann = doc["annotations"][0]
    assert set(ann) == {
        "id", "image_id", "category_id", "bbox", "area", "iscrowd", "register_id", "occlusion"
    }  # fmt: skip
    reg = json.loads((ds.root / "register.json").read_text())
    assert reg["schema"] == "labctl-register/1"
    sb = reg["signboards"][0]
    assert sb["id"] == "SB-0001" and sb["template"] == "register/SB-0001.png"
    png = cv2.imread(str(ds.root / sb["template"]))
    assert png.shape == (160, round(160 * sb["width_m"] / sb["height_m"]), 3)
    assert tuple(png[80, 3][::-1]) != tuple(sb["bg"])  # the border, drawn in fg
    assert len({s["text"] for s in reg["signboards"]}) == 12
    assert len({tuple(s["bg"]) for s in reg["signboards"]}) == 12
    assert cv2.imread(str(ds.root / image["file_name"])).shape == (720, 1280, 3)


def test_templates_are_told_apart_by_orb_features(register: Register) -> None:
    orb = cv2.ORB_create(nfeatures=500)
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
    described = {k: orb.detectAndCompute(t, None)[1] for k, t in register.templates.items()}
    for sb_id, template in register.templates.items():
        assert described[sb_id] is not None and len(described[sb_id]) >= 100
        # The template seen smaller and a little blurred, as a camera would.
        seen = cv2.GaussianBlur(cv2.resize(template, None, fx=0.8, fy=0.8), (0, 0), 0.8)
        _, query = orb.detectAndCompute(seen, None)
        good = {
            k: sum(m.distance < 40 for m in matcher.match(query, d)) for k, d in described.items()
        }
        assert max(good, key=good.__getitem__) == sb_id, good


def test_a_register_is_reused_as_given(tmp_path: Path) -> None:
    first = make_dataset(tmp_path / "a", 2, seed=1, size=SMALL)
    reused = load_register(first.root / "register.json")
    second = make_dataset(tmp_path / "b", 4, seed=2, size=SMALL, register=reused)
    assert (first.root / "register.json").read_bytes() == (
        second.root / "register.json"
    ).read_bytes()
    for sb_id, template in first.register.templates.items():
        assert np.array_equal(second.register.template(sb_id), template)
    assert generate_register(2).file != second.register.file


def test_an_interrupted_make_leaves_nothing_behind(tmp_path: Path) -> None:
    def interrupt(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_dataset(tmp_path / "ds", 5, seed=1, size=SMALL, progress=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_only_a_dataset(tmp_path: Path) -> None:
    target = tmp_path / "ds"
    make_dataset(target, 2, seed=1, size=SMALL)
    with pytest.raises(DatasetError, match="not empty"):
        make_dataset(target, 2, seed=2, size=SMALL)
    make_dataset(target, 3, seed=2, size=SMALL, force=True)
    assert len(load_dataset(target).images) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="replaces only a scene dataset"):
        make_dataset(other, 2, seed=1, size=SMALL, force=True)
    assert (other / "keep.txt").read_text() == "mine"


def test_a_damaged_dataset_is_refused_in_words(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", 3, seed=1, size=SMALL)
    (ds.root / "images" / "000002.jpg").unlink()
    with pytest.raises(DatasetError, match=r"image 2 \(images/000002.jpg\) is missing"):
        load_dataset(ds.root)
    doc = json.loads(ds.annotations_path.read_text())
    doc["annotations"][0]["register_id"] = "SB-9999"
    ds.annotations_path.write_text(json.dumps(doc))
    (ds.root / "images" / "000002.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match="SB-9999, which the register does not hold"):
        load_dataset(ds.root)
    doc["annotations"][0]["image_id"] = 77
    ds.annotations_path.write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="names image 77"):
        load_dataset(ds.root)
    (ds.root / "register" / "SB-0003.png").unlink()
    with pytest.raises(DatasetError, match="template of SB-0003"):
        load_dataset(ds.root)


def test_signboards_too_large_for_the_image_are_refused_before_rendering(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not fit a 640×360 image"):
        make_dataset(tmp_path / "ds", 2, seed=1, size=SMALL, conditions="size=300")
    assert not (tmp_path / "ds").exists()


# --- the CLI -----------------------------------------------------------------------------------


def test_cli_makes_a_valid_dataset_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    runner = CliRunner()
    args = ["scenes", "make", "--out", str(out), "--count", "3", "--seed", "4", "--size", "640x360"]
    made = runner.invoke(cli, args)
    assert made.exit_code == 0, made.output
    ds = load_dataset(out)
    assert [i.id for i in ds.images] == [1, 2, 3]
    assert ds.images[0].width == 640
    again = runner.invoke(cli, args)
    assert again.exit_code == 2
    assert "is not empty; use --force" in _words(again.output)
    forced = runner.invoke(cli, [*args, "--force", "--conditions", "benign"])
    assert forced.exit_code == 0, forced.output
    assert load_dataset(out).images[0].conditions == Conditions()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--count", "0"], "--count"),
        (["--count", "many"], "--count"),
        (["--count", "2", "--size", "big"], "WIDTHxHEIGHT"),
        (["--count", "2", "--conditions", "blur=-2"], "greater than or equal to 0"),
        (["--count", "2", "--seed", "-1"], "--seed"),
    ],
)
def test_cli_bad_arguments_exit_2_with_words(tmp_path: Path, extra: list[str], words: str) -> None:
    args = ["scenes", "make", "--out", str(tmp_path / "ds"), "--seed", "1"]
    result = CliRunner().invoke(cli, args + extra)
    assert result.exit_code == 2
    assert words in _words(result.output)
    assert not (tmp_path / "ds").exists()
