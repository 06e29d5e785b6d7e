"""Variants whose kind is `module:function`: an operator's own River classifier."""

import re
import sys
from pathlib import Path

import pytest

from learner import modelcodec
from learner.errors import ModelError
from learner.metrics import ProgressiveMetrics
from learner.models import build_model, check_variants, model_params
from learner.variant import Variant
from tests.learner.test_models import synthetic_stream

ROOT = Path(__file__).resolve().parents[2]
HOOKS = "tests.learner.hook_models"


def test_a_model_function_builds_a_fresh_model_each_time() -> None:
    first = build_model(f"{HOOKS}:crossed_logreg")
    second = build_model(f"{HOOKS}:crossed_logreg")
    assert first is not second
    assert type(first).__name__ == "Pipeline"
    assert model_params(f"{HOOKS}:crossed_logreg") == {}


def test_parameters_are_the_functions_keyword_arguments() -> None:
    model = build_model(f"{HOOKS}:crossed_logreg", {"lr": 0.2, "l2": 0.01})
    logreg = model["LogisticRegression"]
    assert (logreg.optimizer.learning_rate, logreg.l2) == (0.2, 0.01)


def test_the_model_learns_pickles_and_learns_on_like_the_original() -> None:
    variant = Variant(
        "x",
        f"{HOOKS}:crossed_logreg",
        build_model(f"{HOOKS}:crossed_logreg"),
        ProgressiveMetrics(100),
    )
    data = synthetic_stream(2000, seed=1)
    for x, y in data[:1500]:
        variant.score(y, variant.learn({**x, "user_id": "u1"}, y))
    restored = modelcodec.loads(modelcodec.dumps(variant.model))
    probe = [{**x, "user_id": "u1"} for x, _ in data[1500:]]
    assert [restored.predict_proba_one(x) for x in probe] == [
        variant.model.predict_proba_one(x) for x in probe
    ]
    auc = variant.metrics.report()["roc_auc"]
    assert auc is not None and auc > 0.6


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("no_such_package.models:build", "cannot import no_such_package"),
        (f"{HOOKS}:no_such_function", f"{HOOKS} has no function no_such_function"),
        (f"{HOOKS}:NOT_CALLABLE", f"{HOOKS} has no function NOT_CALLABLE"),
        (f"{HOOKS}:not_a_classifier", "returned StandardScaler, not a River classifier"),
        (f"{HOOKS}:fails", "fails() failed: RuntimeError: no model today"),
        (f"{HOOKS}:unpicklable", "returned a model that cannot be pickled"),
        ("tests.learner.hook_models:", "is written module:function"),
        (":build", "is written module:function"),
        ("a b:c", "is written module:function"),
    ],
)
def test_a_broken_model_function_is_a_model_error_that_says_why(kind: str, message: str) -> None:
    with pytest.raises(ModelError, match=re.escape(message)):
        build_model(kind)


def test_unknown_keyword_arguments_are_a_model_error() -> None:
    with pytest.raises(ModelError, match=r"crossed_logreg\(alpha=1\) failed: TypeError"):
        build_model(f"{HOOKS}:crossed_logreg", {"alpha": 1})


def test_check_variants_names_the_variant_at_fault() -> None:
    check_variants({"main": "logreg", "x": f"{HOOKS}:crossed_logreg"})
    with pytest.raises(ModelError, match=r"variant 'x': .*not a River classifier"):
        check_variants({"main": "logreg", "x": f"{HOOKS}:not_a_classifier"})


def test_the_example_of_the_docs_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/learner.md's example module, installed as the operator would, learns and pickles."""
    docs = (ROOT / "docs" / "learner.md").read_text()
    found = re.search(r"```python\n# yarnshop/models\.py\n(.*?)```", docs, re.DOTALL)
    assert found is not None, "the example module is missing from docs/learner.md"
    package = tmp_path / "yarnshop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(found[1])
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        model = build_model("yarnshop.models:crossed_logreg")
        for x, y in synthetic_stream(500, seed=2):
            model.learn_one({**x, "user_id": "u7"}, y)
        restored = modelcodec.loads(modelcodec.dumps(model))
        x = {**synthetic_stream(1, seed=3)[0][0], "user_id": "u7"}
        assert restored.predict_proba_one(x) == model.predict_proba_one(x)
    finally:
        for name in ("yarnshop.models", "yarnshop"):
            sys.modules.pop(name, None)
