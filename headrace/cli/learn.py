"""`headrace learn`: the learner process of one shard."""

import argparse
import logging
from typing import TYPE_CHECKING

from headrace.cli.common import Commands
from stream.settings import StreamSettings

if TYPE_CHECKING:
    from learner.recovery import Snapshots
    from snapshots.settings import SigningSettings


def add_commands(commands: Commands) -> None:
    learn = commands.add_parser("learn", help="consume events and train the models (one shard)")
    learn.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import gc
    import signal
    import threading

    import redis

    from learner.compose import build_worker
    from learner.models import check_variants
    from learner.scrape import serve_metrics
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
    serve_metrics(settings.metrics_host, settings.metrics_port)
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
        snapshots=_snapshots(signing),
        guards=GuardSettings(),
    )
    worker.run(stop)
    return 0


def _snapshots(signing: "SigningSettings") -> "Snapshots | None":
    """Snapshots, unless switched off."""
    from learner.recovery import Snapshots
    from snapshots.settings import SnapshotSettings

    settings = SnapshotSettings()
    if settings.snapshot_interval_s <= 0:
        return None
    return Snapshots.from_settings(settings, signing)
