"""`headrace`: one command line for every process.

The composition root of each process: it builds settings from the
environment, wires the parts and runs them. Parsing stays here; the work
lives in the packages.
"""

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NoReturn

from pydantic import ValidationError

from headrace.cli.hints import EXPECTED, one_line
from stream.settings import StreamSettings

if TYPE_CHECKING:
    from learner.recovery import Snapshots
    from snapshots.settings import SigningSettings

Command = Callable[[argparse.Namespace], int]


def _stack(args: argparse.Namespace) -> int:
    from headrace.devstack import stack

    shape: dict[str, object] = {}
    if args.brokers is not None:
        shape["kafka_brokers"] = args.brokers
    if args.redis is not None:
        shape["stack_redis"] = args.redis
    # Keyword arguments win over the environment, and the validators widen the addresses.
    settings = StreamSettings(**shape)  # type: ignore[arg-type]
    if args.action == "up":
        result = stack.up(settings)
    elif args.action == "down":
        result = stack.down(settings)
    else:
        result = stack.status(settings)
    print(result)
    if args.action == "up" and (settings.kafka_brokers > 1 or settings.sentinel_addresses):
        # Every client must be told the whole shape, not just the first address.
        print(f"export HEADRACE_KAFKA_BOOTSTRAP={settings.kafka_bootstrap}")
        if settings.sentinel_addresses:
            print(f"export HEADRACE_REDIS_SENTINELS={settings.redis_sentinels}")
    return 0 if args.action != "status" or result.all_running else 3


def _status(args: argparse.Namespace) -> int:
    from learner.status import gather, render

    status = gather(StreamSettings(), n_alerts=args.alerts)
    if not status.redis_up:
        # Nothing else can be read: one line, as for any other failure.
        print(f"headrace: error: {status.problem} (hint: {_STATUS_HINT})", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.buffer.write(status.to_json() + b"\n")
    else:
        print(render(status))
    if status.problem is not None:
        print(f"headrace: error: {status.problem} (hint: {_STATUS_HINT})", file=sys.stderr)
        return 1
    return 0


_STATUS_HINT = (
    "`headrace stack up` starts the local stack; HEADRACE_REDIS_URL and "
    "HEADRACE_KAFKA_BOOTSTRAP say where they run"
)


def _schema(args: argparse.Namespace) -> int:
    from stream.events import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from headrace.sim.publish import simulate
    from headrace.sim.simulator import DEFAULT_START, SimulatorConfig

    count = args.count
    if count is None and args.duration is not None and args.rate is not None:
        count = int(args.duration * args.rate)
    config = SimulatorConfig(
        start=args.start or DEFAULT_START,
        seed=args.seed,
        n_users=args.users,
        n_items=args.items,
        count=count,
        drift_at=args.drift_at,
        attack_at=args.attack_at,
        malformed_rate=args.malformed_rate,
    )
    report = simulate(
        StreamSettings(),
        config,
        rate=args.rate,
        progress=not args.quiet,
        duration=args.duration,
    )
    print(json.dumps(report.as_dict()) if args.json else report)
    return 0


def _learn(args: argparse.Namespace) -> int:
    import gc
    import signal
    import threading

    import redis
    from prometheus_client import start_http_server

    from learner.compose import build_worker
    from learner.models import check_variants
    from learner.settings import LearnerSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # The learner allocates a few objects per event and keeps a large, long-lived state:
    # with the default thresholds the collector re-scans that state many times a second
    # (profiled: event parsing ran 4x slower). Fewer young collections, startup frozen.
    gc.set_threshold(50_000, 50, 100)
    gc.freeze()
    stream = StreamSettings()
    settings = LearnerSettings()
    check_variants(settings.variants)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    from guards.settings import GuardSettings
    from learner.redisconn import connect
    from learner.signing import Seal
    from snapshots.settings import SigningSettings

    signing = SigningSettings()
    # No signing key, no learner: it signs every state it publishes.
    seal = Seal(signing.verify_keys(), signing.signer())
    client: redis.Redis = connect(stream)
    worker = build_worker(
        stream,
        settings,
        client,
        seal=seal,
        snapshots=_snapshots_for_learner(signing),
        guards=GuardSettings(),
    )
    worker.run(stop)
    return 0


def _snapshots_for_learner(signing: "SigningSettings") -> "Snapshots | None":
    """Snapshots, unless switched off."""
    from learner.recovery import Snapshots
    from snapshots.settings import SnapshotSettings

    settings = SnapshotSettings()
    if settings.snapshot_interval_s <= 0:
        return None
    return Snapshots.from_settings(settings, signing)


def _serve(args: argparse.Namespace) -> int:
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


def _start(text: str) -> datetime:
    """Event time of the simulator's first event; 'now' keeps a live demo's watermark moving."""
    try:
        start = datetime.now(UTC) if text == "now" else datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from exc
    if start.tzinfo is None:
        raise argparse.ArgumentTypeError("--start needs a time zone, e.g. 2026-01-01T00:00:00Z")
    return start


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be zero or more")
    return value


def _rollback(args: argparse.Namespace) -> int:

    from learner.layout import ShardKeys
    from learner.operations import roll_back
    from learner.redisconn import connect
    from learner.settings import LearnerSettings

    stream = StreamSettings()
    keys = ShardKeys(stream.key_prefix, LearnerSettings().shard)
    client = connect(stream)
    result = roll_back(client, keys, variant=args.variant, reason=args.reason)
    print(
        f"rolled back {', '.join(result['variants'])} of shard {keys.shard} to last known good "
        f"as version {result['version']}"
    )
    return 0


def _keys_generate(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from snapshots.keys import SigningKey

    key = SigningKey.generate()
    path = Path(args.file)
    try:
        # O_EXCL: never overwrite a key (state and snapshots signed with it would be orphaned).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"headrace: error: {path} exists; keys are never overwritten", file=sys.stderr)
        return 1
    with os.fdopen(fd, "w") as out:
        out.write(key.text + "\n")
    print(key.public.text)
    return 0


def _keys_public(args: argparse.Namespace) -> int:
    from snapshots.settings import SigningSettings

    print(SigningSettings().signer().public.text)
    return 0


def _snapshot_command(name: str) -> Command:
    """`headrace snapshot NAME`, imported when run: the snapshot code loads River, slowly."""

    def run(args: argparse.Namespace) -> int:
        from headrace.cli import snapshots as cli_snapshots

        command: Command = getattr(cli_snapshots, name)
        return command(args)

    return run


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line with a hint, like every other error."""

    def error(self, message: str) -> NoReturn:
        print(f"headrace: error: {message} (hint: `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="headrace",
        description="Online learning from a live clickstream. Settings come from HEADRACE_* "
        "environment variables (see the README).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stack = commands.add_parser("stack", help="start, stop or inspect the local Kafka and Redis")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument(
        "--brokers",
        type=int,
        choices=range(1, 10),
        metavar="N",
        help="Kafka brokers to run (default HEADRACE_KAFKA_BROKERS, 1); 3 gives replication 3",
    )
    stack.add_argument(
        "--redis",
        choices=["single", "sentinel"],
        help="one Redis server, or a primary, a replica and three sentinels "
        "(default HEADRACE_STACK_REDIS, single)",
    )
    stack.set_defaults(run=_stack)

    status = commands.add_parser(
        "status", help="one screen: stack, learners, lag, variants, quarantine, latest alerts"
    )
    status.add_argument("--json", action="store_true", help="the same facts as JSON")
    status.add_argument(
        "--alerts", type=_positive_int, default=5, help="how many recent alerts (default 5)"
    )
    status.set_defaults(run=_status)

    schema = commands.add_parser("schema", help="print the events' JSON Schema")
    schema.set_defaults(run=_schema)

    sim = commands.add_parser("simulate", help="publish a seeded yarn-store clickstream to Kafka")
    sim.add_argument("--seed", type=int, default=7, help="same seed, same events (default 7)")
    sim.add_argument(
        "--rate", type=float, default=None, help="events per second (default: flat out)"
    )
    sim.add_argument("--count", type=_positive_int, default=None, help="events to publish")
    sim.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds to run at most (with --rate: rate x duration events, fewer if the rate "
        "is not reached in time)",
    )
    sim.add_argument("--users", type=_positive_int, default=2_000)
    sim.add_argument("--items", type=_positive_int, default=500)
    sim.add_argument("--drift-at", type=_positive_int, default=None, help="event count of a drift")
    sim.add_argument(
        "--attack-at", type=_positive_int, default=None, help="event count of an attack"
    )
    sim.add_argument("--malformed-rate", type=float, default=0.0, help="share of broken records")
    sim.add_argument(
        "--start",
        type=_start,
        default=None,
        help="event time of the first event: RFC 3339 or 'now'",
    )
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.add_argument(
        "--json", action="store_true", help="the closing report as JSON (counts by type, rate)"
    )
    sim.set_defaults(run=_simulate)

    learn = commands.add_parser("learn", help="consume events and train the models (one shard)")
    learn.set_defaults(run=_learn)

    serve = commands.add_parser("serve", help="serve predictions over HTTP (POST /predict)")
    serve.add_argument("--host", default=None, help="bind address (default HEADRACE_HOST)")
    serve.add_argument("--port", type=int, default=None, help="port (default HEADRACE_PORT)")
    serve.add_argument("--workers", type=_positive_int, default=1, help="processes (default 1)")
    serve.add_argument(
        "--access-log", action="store_true", help="log every request line (no bodies, no ids)"
    )
    serve.set_defaults(run=_serve)

    snap = commands.add_parser("snapshot", help="list, take, verify and restore snapshots")
    snap_commands = snap.add_subparsers(dest="action", required=True, metavar="ACTION")
    snap_commands.add_parser("list", help="every valid snapshot, oldest first").set_defaults(
        run=_snapshot_command("list_")
    )
    snap_commands.add_parser("create", help="take a snapshot of the shard now").set_defaults(
        run=_snapshot_command("create")
    )
    verify = snap_commands.add_parser("verify", help="verify snapshot files (signature, hash)")
    verify.add_argument("files", nargs="+", metavar="FILE")
    verify.add_argument(
        "--current-key-only",
        action="store_true",
        help="refuse files signed with a previous key (HEADRACE_VERIFY_PREVIOUS_KEYS)",
    )
    verify.set_defaults(run=_snapshot_command("verify"))
    snap_commands.add_parser(
        "resign", help="re-sign every snapshot signed with a previous key with the current one"
    ).set_defaults(run=_snapshot_command("resign"))
    restore = snap_commands.add_parser("restore", help="restore a snapshot as a new version")
    restore.add_argument("snapshot", help="a snapshot id, 'latest' or 'last_known_good'")
    restore.add_argument(
        "--no-replay", action="store_true", help="skip the events since the snapshot"
    )
    restore.add_argument("--no-wait", action="store_true", help="do not follow the replay")
    restore.set_defaults(run=_snapshot_command("restore"))

    keys = commands.add_parser("keys", help="make the learner's signing key; print its public key")
    key_commands = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    generate = key_commands.add_parser(
        "generate", help="write a new Ed25519 signing key to FILE (0600); print its public key"
    )
    generate.add_argument("file", metavar="FILE")
    generate.set_defaults(run=_keys_generate)
    key_commands.add_parser(
        "public",
        help="print the public key of HEADRACE_SIGNING_KEY(_FILE), for HEADRACE_VERIFY_KEY",
    ).set_defaults(run=_keys_public)

    rollback = commands.add_parser(
        "rollback", help="serve the last-known-good model again (the running learner acts)"
    )
    rollback.add_argument("--variant", default=None, help="one variant (default: every one)")
    rollback.add_argument("--reason", default="operator rollback", help="kept in the lineage")
    rollback.set_defaults(run=_rollback)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Command = args.run
    try:
        return run(args)
    except EXPECTED as exc:
        print(one_line(exc), file=sys.stderr)
        return 2 if isinstance(exc, ValidationError) else 1
    except KeyboardInterrupt:
        return 130
