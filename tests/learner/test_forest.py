"""The "tree" forest grows the same trees in every process (learner/forest.py).

River's forest did not: a nominal splitter tries its values in the order of a set of
strings, which follows the process's hash seed, and the forest draws each new leaf's
features from its generator in the order of the leaves. The learner's guarantee (a
learner restored from its published state continues exactly as one that never stopped)
needs the same forest whatever the seed.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

SCRIPT = """
import json, sys
from pathlib import Path
from learner import modelcodec
from learner.models import build_model
from tests.learner.test_models import synthetic_stream

data = synthetic_stream(6000, seed=1)
probe = [x for x, _ in synthetic_stream(50, seed=9)]
blob = Path(sys.argv[2])
if sys.argv[1] == "first-half":
    model = build_model("tree")
    for x, y in data[:3000]:
        model.learn_one(x, y)
    blob.write_bytes(modelcodec.dumps(model))
    sys.exit()
if sys.argv[1] == "second-half":
    model = modelcodec.loads(blob.read_bytes())
    rest = data[3000:]
else:
    model = build_model("tree")
    rest = data
for x, y in rest:
    model.learn_one(x, y)
print(json.dumps([model.predict_proba_one(x).get(True, 0.0) for x in probe]))
"""


def run(step: str, hash_seed: int, blob: Path) -> list[float]:
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, step, str(blob)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found: list[float] = json.loads(done.stdout) if done.stdout else []
    return found


def test_processes_with_other_hash_seeds_grow_the_same_forest(tmp_path: Path) -> None:
    blob = tmp_path / "tree.blob"
    never_stopped = run("whole", 1, blob)
    assert len(set(never_stopped)) > 5  # the forest has learned something to compare
    assert run("whole", 2, blob) == never_stopped
    # Published half way by one process, restored and continued by another.
    run("first-half", 3, blob)
    assert run("second-half", 4, blob) == never_stopped
