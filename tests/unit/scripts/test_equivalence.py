"""scripts/equivalence/: the reference scripts load with numpy alone (they run in side virtualenvs
and find common.py beside them), and common.py's images are the ones the fixtures recorded."""

from __future__ import annotations

import ast
import importlib.util
import sys

import pytest

from scripts.equivalence import common
from tests.conftest import REPO
from tests.fixtures.equivalence import equivalence_fixture

FOLDER = REPO / "scripts" / "equivalence"
MODELS = ("hpsv2", "hpsv3", "imagereward")


def _top_level_imports(path) -> set[str]:
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("name", [f"{m}_reference" for m in MODELS] + ["common"])
def test_numpy_only_at_the_top(name):
    imports = _top_level_imports(FOLDER / f"{name}.py") - set(sys.stdlib_module_names) - {"__future__"}
    assert imports <= {"numpy", "common"}, imports


@pytest.mark.parametrize("model", MODELS)
def test_reference_script_loads_by_path_with_common_beside_it(model, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts its folder first: undone after the test
    monkeypatch.delitem(sys.modules, "common", raising=False)
    spec = importlib.util.spec_from_file_location(f"{model}_reference", FOLDER / f"{model}_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.common.__file__ == common.__file__ and module.FIXTURE == equivalence_fixture(model).dir
    sys.modules.pop("common")
    ref = equivalence_fixture(model).ref
    images = [module.common.make_image(*spec) for spec in module.IMAGES[: len(ref["images"])]]
    assert module.common.image_records(module.IMAGES, images) == ref["images"]  # what reference.json recorded


def test_images_are_checked_against_their_sha256():
    ref = equivalence_fixture("hpsv2").ref
    assert len(common.reference_images(ref)) == len(ref["images"])
    wrong = {"images": [dict(ref["images"][0], seed=ref["images"][0]["seed"] + 1)]}
    with pytest.raises(AssertionError, match="numpy made different pixels"):
        common.reference_images(wrong)
