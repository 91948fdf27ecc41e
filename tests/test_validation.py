"""One validator per fact (unet/validation.py) and one home for the papers' constants (unet/constants.py)."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import numpy as np
import pytest

from unet import constants
from unet.data import weights as W
from unet.models.shapes import anisotropic_levels
from unet.postprocess.checks import check_element_size as postprocess_element_size
from unet.tasks import DetectionTask, SegmentationTask
from unet.validation import check_element_size, check_labels

ROOT = Path(__file__).resolve().parents[1]

#: copies of the two checks in files other engineers own (issue #23 item 4: the replacement is written in
#: its report); remove a file here once it calls unet.validation
NOT_YET_CONVERTED: dict[str, set[str]] = {"element_size": set(), "labels": set()}


def test_element_size_is_checked_once_with_the_thing_named() -> None:
    assert check_element_size(None, 2) is None
    assert check_element_size([1, 0.5], 2) == (1.0, 0.5)
    assert check_element_size(0.5, 3, broadcast=True) == (0.5, 0.5, 0.5)
    assert check_element_size([0.5], 2, broadcast=True) == (0.5, 0.5)
    assert check_element_size((2.0, 1.0, 1.0)) == (2.0, 1.0, 1.0)  # any number of axes
    bad = [
        ((1.0, 0.0), 2, "must be finite and positive"),
        ((1.0, float("nan")), 2, "must be finite and positive"),
        ((1.0, -1.0), 2, "must be finite and positive"),
        ((1.0, 1.0, 1.0), 2, "3 entries for a 2D image"),
        (0.5, 2, "one number"),
        ("ab", 2, "not a sequence of numbers"),
        (("a", 1), 2, "not a sequence of numbers"),
        ((), None, "empty"),
    ]
    for value, ndim, message in bad:
        with pytest.raises(ValueError, match=f"^model.element_size .*{message}|^model.element_size is empty"):
            check_element_size(value, ndim, name="model.element_size")


def test_every_element_size_check_is_the_validator() -> None:
    """The same bad element size is refused by the models, the weights and postprocess with one message."""
    labels = np.zeros((8, 8), np.int32)
    labels[2:4, 2:4] = 1
    calls = (
        lambda es: anisotropic_levels(es, depth=2),
        lambda es: W.distance_maps(labels, es),
        lambda es: W.balance_weights(labels > 0, element_size=es),
        lambda es: postprocess_element_size(es, 2),
    )
    for call in calls:
        with pytest.raises(ValueError, match=r"^element_size \(1\.0, -1\.0\) must be finite and positive$"):
            call((1.0, -1.0))
    assert postprocess_element_size((1, 2), 2).dtype == np.float64


def test_labels_are_checked_once_with_the_thing_named() -> None:
    assert check_labels(np.ones((2, 2), bool)).dtype == np.uint8
    ok = np.arange(4, dtype=np.int64).reshape(2, 2)
    assert check_labels(ok) is ok
    bad = [
        ([[1, 2]], "must be a numpy array, got list"),
        (np.zeros(4, np.int32), r"must be 2D \(Y, X\) or 3D \(Z, Y, X\), got shape \(4,\)"),
        (np.zeros((2, 2), np.float32), "must have an integer dtype"),
        (np.array([[0, -1]]), "must be non-negative, found minimum -1"),
    ]
    for value, message in bad:
        with pytest.raises(ValueError, match=f"^mask {message}"):
            check_labels(value, "mask")
        with pytest.raises(ValueError, match=f"^labels {message}"):
            W.insert_ridges(value)  # the weights use the validator


def _sources() -> dict[str, str]:
    return {p.relative_to(ROOT).as_posix(): p.read_text() for p in sorted((ROOT / "unet").rglob("*.py"))}


def test_no_module_repeats_a_validator() -> None:
    """No module but unet/validation.py words the element-size or the label check itself."""
    facts = {
        "element_size": re.compile(r"element_size.*(finite and positive|positive and finite|positive val)"),
        "labels": re.compile(r"must be non-negative, found"),
    }
    copies = []
    for path, text in _sources().items():
        for fact, pattern in facts.items():
            if path != "unet/validation.py" and path not in NOT_YET_CONVERTED[fact] and pattern.search(text):
                copies.append(f"{path}: its own {fact} check; use unet.validation")
    assert not copies, "\n".join(copies)
    for fact, paths in NOT_YET_CONVERTED.items():  # the list shrinks: a converted file leaves it
        for path in paths:
            assert facts[fact].search(_sources()[path]), f"{path} is converted: remove it from the list"


#: parameter -> constant of every papers' default
PAPER_DEFAULTS = {
    "v_bal": "V_BAL",
    "sigma_bal": "SIGMA_BAL",
    "sigma_sep": "SIGMA_SEP",
    "lambda_sep": "LAMBDA_SEP",
    "radius": "DETECTION_RADIUS",
    "d_match": "D_MATCH",
}


def test_the_papers_constants_have_one_home() -> None:
    """Every default of a paper constant in tasks.py and data/weights.py is the name from unet/constants.py
    (a literal there would be a second home), and the values are those the papers give."""
    written = []
    for path in ("unet/tasks.py", "unet/data/weights.py"):
        for node in ast.walk(ast.parse((ROOT / path).read_text())):
            pairs = []
            if isinstance(node, ast.FunctionDef):
                args = node.args.args[len(node.args.args) - len(node.args.defaults) :] + node.args.kwonlyargs
                defaults = [*node.args.defaults, *node.args.kw_defaults]
                pairs = [(a.arg, d) for a, d in zip(args, defaults, strict=True) if d is not None]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
                pairs = [(node.target.id, node.value)]
            for name, default in pairs:
                if name in PAPER_DEFAULTS and ast.unparse(default) != PAPER_DEFAULTS[name]:
                    written.append(f"{path}:{default.lineno}: {name} = {ast.unparse(default)}")
    assert not written, "paper constants written outside unet/constants.py:\n" + "\n".join(written)
    c = constants
    assert (c.V_BAL, c.SIGMA_BAL, c.SIGMA_SEP, c.LAMBDA_SEP) == (0.1, 10, 6, 50)
    assert SegmentationTask().v_bal == DetectionTask().v_bal == constants.V_BAL
    assert inspect.signature(W.segmentation_targets).parameters["lambda_sep"].default == constants.LAMBDA_SEP
