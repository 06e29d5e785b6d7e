"""HEADRACE_CASCADE: which variants a shard's cascade runs, checked when settings load.

Kept apart from the cascade itself (api/cascade.py) so that reading settings imports no
model code.
"""

from collections.abc import Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field, model_validator

EVERY_SHARD = "*"
"""The key of a cascade that applies to every shard without one of its own."""


class CascadeSpec(BaseModel):
    """One shard's cascade: `first` ranks everything, `then` re-scores its top `top`, or,
    with `uncertain`, only the `uncertain` candidates nearest the cut after its `top`-th."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    first: str = Field(min_length=1)
    """The cheap variant (the logistic model, scored with numpy)."""
    then: str = Field(min_length=1)
    """The expensive variant (fm, tree, any River model), scored with River."""
    top: int = Field(ge=1, le=100_000)
    """The cut in the cheap ranking: without `uncertain`, the expensive variant re-scores
    every candidate above it."""
    uncertain: int | None = Field(default=None, ge=2, le=200_000)
    """If set, the expensive variant re-scores only this many candidates: those the cheap
    ranking puts nearest the cut (half above it, half below), whose side of the cut it is
    least sure of. The ones above them keep the cheap ranking's places."""

    @model_validator(mode="after")
    def _two_variants(self) -> "CascadeSpec":
        if self.first == self.then:
            raise ValueError(f"a cascade needs two different variants, not {self.first!r} twice")
        if self.uncertain is not None and self.uncertain > 2 * self.top:
            raise ValueError(
                f"uncertain {self.uncertain} reaches past the first candidate (half of it, "
                f"{self.uncertain // 2}, lies above the cut at top {self.top}): make it at "
                f"most {2 * self.top}, or drop it to re-score the top {self.top}"
            )
        return self

    def span(self, n: int) -> tuple[int, int]:
        """[start, stop): the places of the cheap ranking of `n` candidates re-scored."""
        if self.uncertain is None:
            return 0, min(self.top, n)
        start = min(self.top - self.uncertain // 2, n)
        return start, min(start + self.uncertain, n)


def for_shard(cascades: Mapping[str, CascadeSpec], shard: str) -> CascadeSpec | None:
    return cascades.get(shard, cascades.get(EVERY_SHARD))


def check_shards(cascades: Mapping[str, CascadeSpec], shards: Iterable[str]) -> None:
    """Raise ValueError when HEADRACE_CASCADE names a shard HEADRACE_SHARDS does not have."""
    known = list(shards)
    unknown = sorted(set(cascades) - {EVERY_SHARD, *known})
    if unknown:
        raise ValueError(
            f"HEADRACE_CASCADE names shard(s) {', '.join(unknown)}, which HEADRACE_SHARDS "
            f"does not have (it has: {', '.join(known)})"
        )


def variants_wanted(cascades: Mapping[str, CascadeSpec]) -> list[str]:
    """Every variant some cascade needs deserialized."""
    return list(dict.fromkeys(n for spec in cascades.values() for n in (spec.first, spec.then)))
