"""`headrace snapshot list | create | verify | restore`: the operator's snapshot commands."""

import argparse
import sys
import time
from pathlib import Path

import redis

from learner.keys import ShardKeys
from learner.settings import LearnerSettings
from learner.state import StateStore
from snapshots.codec import decode, read_header, signed_with
from snapshots.codec import resign as resign_blob
from snapshots.errors import SnapshotError, SnapshotNotFoundError
from snapshots.store import SUFFIX
from stream.operations import restore_snapshot, take_snapshot
from stream.recovery import Snapshots
from stream.settings import StreamSettings


def _context() -> tuple[redis.Redis, ShardKeys, Snapshots]:
    from snapshots.settings import SnapshotSettings

    stream = StreamSettings()
    keys = ShardKeys(stream.key_prefix, LearnerSettings().shard)
    client = redis.Redis.from_url(stream.redis_url)
    return client, keys, Snapshots.from_settings(SnapshotSettings())


def list_(args: argparse.Namespace) -> int:
    from snapshots.settings import SnapshotSettings

    snapshots = Snapshots.from_settings(SnapshotSettings())
    infos = snapshots.store.list()
    print(f"{'snapshot':<48} {'version':>8} {'learned':>9} {'size':>9}  created (UTC)        lkg")
    for info in infos:
        header = info.header
        learned = sum(header.n_learned.values())
        print(
            f"{info.snapshot_id:<48} {header.version:>8} {learned:>9} {info.size:>9}  "
            f"{header.created_at:%Y-%m-%d %H:%M:%S}  {'yes' if info.last_known_good else ''}"
        )
    for rejected in snapshots.store.rejected():
        print(f"refused: {rejected.name}: {rejected.reason}", file=sys.stderr)
    print(f"{len(infos)} snapshots in {snapshots.settings.snapshot_dir}")
    return 0


def create(args: argparse.Namespace) -> int:
    client, keys, snapshots = _context()
    result = take_snapshot(client, keys, snapshots)
    print(f"snapshot {result['snapshot_id']} of version {result['version']}")
    return 0


def verify(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from snapshots.settings import SnapshotSettings

    settings = SnapshotSettings()
    current = settings.signing_key()
    keys = (current,) if args.current_key_only else settings.verification_keys()
    refused = previous = 0
    files: list[Path] = [Path(f) for f in args.files]
    for path in tqdm(files, unit="file", disable=len(files) < 5, file=sys.stderr):
        try:
            blob = path.read_bytes()
            header, _ = decode(blob, keys)
        except (SnapshotError, OSError) as exc:
            refused += 1
            print(f"REFUSED {path}: {exc}")
            continue
        old = not signed_with(blob, current)
        previous += old
        which = " (signed with a previous key)" if old else ""
        print(f"ok      {path}: {header.model} version {header.version}{which}")
    also = f" ({previous} with a previous key)" if previous else ""
    print(f"{len(files) - refused} verified{also}, {refused} refused")
    return 1 if refused else 0


def resign(args: argparse.Namespace) -> int:
    """Re-sign, with the current key, every snapshot of the store still signed with an old one."""
    from tqdm import tqdm

    from snapshots.settings import SnapshotSettings

    settings = SnapshotSettings()
    snapshots = Snapshots.from_settings(settings)
    infos = snapshots.store.list()
    done = 0
    for info in tqdm(infos, unit="file", disable=len(infos) < 5, file=sys.stderr):
        try:
            blob = snapshots.store.get(info.snapshot_id)
        except SnapshotNotFoundError:
            continue  # removed by retention while we went through the store
        if signed_with(blob, snapshots.key):
            continue
        snapshots.store.put(info.snapshot_id, resign_blob(blob, snapshots.accepted, snapshots.key))
        done += 1
    refused = snapshots.store.rejected()
    for rejected in refused:
        print(f"refused: {rejected.name}: {rejected.reason}", file=sys.stderr)
    print(
        f"{done} re-signed, {len(infos) - done} already signed with the current key, "
        f"{len(refused)} refused, in {settings.snapshot_dir}"
    )
    return 1 if refused else 0


def restore(args: argparse.Namespace) -> int:
    client, keys, snapshots = _context()
    result = restore_snapshot(client, keys, snapshots, args.snapshot, replay=not args.no_replay)
    print(f"restored {result['snapshot_id']} as version {result['version']}")
    if not args.no_replay and not args.no_wait:
        snapshot_file = snapshots.store.root / f"{result['snapshot_id']}{SUFFIX}"
        with snapshot_file.open("rb") as file:
            header = read_header(file, snapshots.accepted)
        _follow_replay(client, keys, header.offsets)
    return 0


def _follow_replay(client: redis.Redis, keys: ShardKeys, offsets: dict[int, int]) -> None:
    """A progress bar while the learner replays from `offsets` (the snapshot's) to the end
    of its partitions."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition
    from tqdm import tqdm

    stream = StreamSettings()
    store = StateStore(client, keys, lease_ttl_ms=0)
    if not client.exists(keys.lease):
        print("no learner owns the shard: the replay starts when one does")
        return
    consumer = KafkaConsumer(bootstrap_servers=stream.kafka_bootstrap)
    try:
        tps = [TopicPartition(stream.topic_events, p) for p in offsets]
        ends = {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()
    start = sum(offsets.values())
    total = max(0, sum(ends.values()) - start)
    with tqdm(total=total, unit="ev", file=sys.stderr, desc="replay") as bar:
        done = 0
        while done < total:
            time.sleep(0.5)
            state = store.load()
            if state is None or not client.exists(keys.lease):
                break
            position = sum(min(state.offsets.get(p, 0), end) for p, end in ends.items())
            bar.update(position - start - done)
            done = position - start
    if done < total:
        # Said on stdout, as the summary: the replay resumes with the next learner.
        print(f"replayed {done} of {total} events; the learner stopped, the next one goes on")
        return
    print(f"replayed {total} events")
