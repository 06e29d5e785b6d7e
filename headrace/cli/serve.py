"""`headrace serve`: the prediction API."""

import argparse
import logging
import sys

from headrace.cli.common import Commands, positive_int
from headrace.cli.hints import one_line
from stream.settings import StreamSettings


def add_commands(commands: Commands) -> None:
    serve = commands.add_parser("serve", help="serve predictions over HTTP (POST /predict)")
    serve.add_argument("--host", default=None, help="bind address (default HEADRACE_HOST)")
    serve.add_argument("--port", type=int, default=None, help="port (default HEADRACE_PORT)")
    serve.add_argument("--workers", type=positive_int, default=1, help="processes (default 1)")
    serve.add_argument(
        "--access-log", action="store_true", help="log every request line (no bodies, no ids)"
    )
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError

    from api.cascadespec import check_shards
    from api.settings import ApiSettings
    from api.traffic import shard_names

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.workers < 1:
        print("headrace: --workers must be at least 1", file=sys.stderr)
        return 2
    from snapshots.settings import SigningSettings

    try:
        # Checked here, once, so a bad setting is one clear line rather than a worker crash.
        settings = ApiSettings()
        check_shards(settings.cascade, shard_names(StreamSettings().shards))
        signing = SigningSettings()
        signing.verify_keys()
    except ValidationError as exc:
        print(one_line(exc), file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"headrace: error: {exc}", file=sys.stderr)
        return 2
    if signing.has_signer:
        # The API verifies; were it able to sign, taking it over would forge state too.
        print(
            "headrace: error: the API must not hold the learner's signing key (hint: unset "
            "HEADRACE_SIGNING_KEY and HEADRACE_SIGNING_KEY_FILE for `headrace serve`; it "
            "verifies with HEADRACE_VERIFY_KEY)",
            file=sys.stderr,
        )
        return 2
    uvicorn.run(
        "api.app:app_from_env",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        access_log=args.access_log,
        log_level="info",
    )
    return 0
