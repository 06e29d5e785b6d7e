"""The /predict wire types, decoded by msgspec, with the event contract's limits.

A request is decoded straight from the body bytes into frozen Structs (no intermediate
dicts): about 5x cheaper than FastAPI's json.loads plus pydantic validation. The limits
are `stream.events`' (identifiers 1-128 characters, names 1-64, free text up to 256,
positions 0-10,000, prices 0-1,000,000), so whatever the API accepts, it can publish as
an impression. `Context` and `Candidate` have the attribute names of
`learner.features.ContextLike` and `ItemLike`, so they go into the feature pipeline as
they are. msgspec also writes the JSON Schema the OpenAPI document shows.
"""

from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

from api.errors import InvalidRequestError, MalformedBodyError
from stream.events import ID_MAX, NAME_MAX, POSITION_MAX, PRICE_MAX, TEXT_MAX

Id = Annotated[str, Meta(min_length=1, max_length=ID_MAX)]
Name = Annotated[str, Meta(min_length=1, max_length=NAME_MAX)]
Text = Annotated[str, Meta(max_length=TEXT_MAX)]


class Context(Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """Where the items will be shown."""

    query: Text = ""
    device: Name = "desktop"
    page: Name = "search"
    position: Annotated[int, Meta(ge=0, le=POSITION_MAX)] = 0


class Candidate(Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """An item the storefront could show."""

    item_id: Id
    price: Annotated[float, Meta(ge=0, le=PRICE_MAX)]
    category: Name
    brand: Name | None = None


class PredictRequest(Struct, frozen=True, forbid_unknown_fields=True):
    """Score `candidates` for `user_id` in `context`: every candidate in order, or the best
    `top_k` first. `publish_impressions` overrides the server's setting for this request."""

    user_id: Id
    candidates: Annotated[list[Candidate], Meta(min_length=1)]
    context: Context = msgspec.field(default_factory=Context)
    top_k: Annotated[int, Meta(ge=1)] | None = None
    publish_impressions: bool | None = None


def request_type(max_candidates: int) -> type[PredictRequest]:
    """PredictRequest with this deployment's candidate limit (in the decoder and the docs)."""
    limited = Annotated[list[Candidate], Meta(min_length=1, max_length=max_candidates)]
    top_k = Annotated[int, Meta(ge=1, le=max_candidates)] | None
    limited_type: type[PredictRequest] = msgspec.defstruct(  # type: ignore[assignment]
        "PredictRequest",
        [("candidates", limited), ("top_k", top_k, None)],
        bases=(PredictRequest,),
        frozen=True,
        forbid_unknown_fields=True,
        module=__name__,
    )
    limited_type.__doc__ = PredictRequest.__doc__
    return limited_type


class Score(Struct, frozen=True, gc=False):
    # gc=False: strings and a float, never in a cycle; the collector need not track the
    # rows of every answer.
    item_id: str
    score: float
    """Probability that the user buys the item when shown."""
    impression_id: str
    """Send it back with the click or purchase this impression leads to."""


class PredictResponse(Struct, frozen=True):
    request_id: str
    model: str
    """The model shard that answered."""
    variant: str
    epoch: int
    """The epoch of that state version: states compare by (epoch, version), and a restore,
    a rollback or a learner taking over starts a new epoch (its versions may number lower)."""
    version: int
    """The exact state version that computed every score of this response."""
    degraded: bool
    """True when the online aggregates could not be read (Redis away): features then come
    from empty aggregates, as for a new user and new items."""
    scores: list[Score]


class ErrorDetail(Struct, frozen=True):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(Struct, frozen=True):
    error: ErrorDetail


class RequestDecoder:
    """Bytes to a PredictRequest, or an ApiError that names the offending field."""

    def __init__(self, max_candidates: int) -> None:
        self.type = request_type(max_candidates)
        self._decoder = msgspec.json.Decoder(self.type)

    def decode(self, body: bytes) -> PredictRequest:
        try:
            return self._decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise InvalidRequestError.from_msgspec(str(exc)) from None
        except msgspec.DecodeError as exc:
            raise MalformedBodyError(f"the body is not valid JSON: {exc}") from None


def openapi_components(request: type[PredictRequest]) -> dict[str, Any]:
    """JSON Schemas of the wire types, as OpenAPI components (#/components/schemas/...)."""
    _, components = msgspec.json.schema_components(
        (request, PredictResponse, ErrorResponse), ref_template="#/components/schemas/{name}"
    )
    return components


def schema_ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}
