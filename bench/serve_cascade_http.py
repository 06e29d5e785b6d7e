"""bench/serve.py --cascade: the cascade's API processes, their check and their cost.

    --cascade KIND:M      the logistic variant ranks every candidate, KIND re-scores the best M
    --cascade KIND:M:U    the uncertainty rule: KIND re-scores only the U candidates nearest
                          the cut after the M-th place (HEADRACE_CASCADE's `uncertain`)

The learner then also learns a KIND variant, and two API processes run beside the plain
one (`api`, the logistic variant alone): `cascade` (HEADRACE_CASCADE) and KIND alone
(HEADRACE_TRAFFIC). Before any load, one request to `cascade` must come back with exactly
the candidates the rule re-scores marked `then`: the same work as claimed, not a fallback
to the cheap variant. Their lines in serve.py's report carry their CPU per request over
the plain API's.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import orjson

from api.cascadespec import CascadeSpec

CASCADE = "cascade"
"""The name of the API process that runs the cascade."""


class _Served(Protocol):
    rps: float
    server_cpu: float


@dataclass(frozen=True)
class CascadeRun:
    """What `--cascade` asked for: the expensive kind and the rule."""

    spec: CascadeSpec

    @classmethod
    def parse(cls, text: str) -> "CascadeRun":
        """`KIND:M` or `KIND:M:U`; ValueError with what is wrong."""
        parts = text.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not all(p.isdigit() for p in parts[1:]):
            raise ValueError(f"takes KIND:M or KIND:M:U (e.g. fm:50, fm:10:10), not {text!r}")
        kind, top = parts[0], int(parts[1])
        uncertain = int(parts[2]) if len(parts) == 3 else None
        # CascadeSpec's own checks: what `headrace serve` would refuse, refused here.
        return cls(CascadeSpec(first="main", then=kind, top=top, uncertain=uncertain))

    @property
    def kind(self) -> str:
        return self.spec.then

    @property
    def label(self) -> str:
        rule = f"top {self.spec.top}"
        if self.spec.uncertain is not None:
            rule = f"{self.spec.uncertain} near {self.spec.top}"
        return f"{self.kind} {rule}"

    def apps(self) -> dict[str, dict[str, str]]:
        """Each extra API process's settings, by its name in the report."""
        cascade = self.spec.model_dump(exclude_none=True)
        return {
            CASCADE: {"HEADRACE_CASCADE": orjson.dumps(cascade).decode()},
            self.kind: {"HEADRACE_TRAFFIC": orjson.dumps({self.kind: 1}).decode()},
        }

    def check(self, url: str, body: bytes) -> str:
        """One /predict to the cascade's app: exactly the rule's candidates re-scored."""
        import httpx

        headers = {"Content-Type": "application/json"}
        answer = httpx.post(f"{url}/predict", content=body, headers=headers, timeout=60).json()
        assert "scores" in answer, answer
        stages = [entry["stage"] for entry in answer["scores"]]
        start, stop = self.spec.span(len(stages))
        assert stages.count("then") == stop - start, answer.get("error", stages[:5])
        first, then = answer["cascade"]["first"], answer["cascade"]["then"]
        assert answer["cascade"].get("uncertain") == self.spec.uncertain, answer["cascade"]
        return (
            f"cascade checked: {first['variant']} then {then['variant']} v{then['version']} "
            f"on {stop - start} of {len(stages)} candidates ({self.label})"
        )


def cost_line(name: str, k: int, served: _Served, plain: _Served) -> str:
    """The CPU per request of `name`'s app over the plain API's (requests per CPU-second)."""
    per_cpu = served.rps / max(served.server_cpu, 1e-9)
    plain_per_cpu = plain.rps / max(plain.server_cpu, 1e-9)
    ratio = plain_per_cpu / max(per_cpu, 1e-9)
    return f"{k:>10} {name:>6} costs {ratio:.2f}x the api's CPU per request"


def extra_names(results: Mapping[tuple[str, int], object]) -> list[str]:
    names = dict.fromkeys(name for name, _ in results)
    return [name for name in names if name not in ("api", "naive", "granian", "before")]
