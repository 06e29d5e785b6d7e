"""`headrace snapshot list | create | verify | resign | restore`: the operator's commands.

`list` and `verify` need verifying keys only. `create` and `restore` ask the learner
owning the shard; with none running they act here, which signs and so needs the
learner's signing key (HEADRACE_SIGNING_KEY_FILE). `resign` signs too.
"""

import argparse
import sys
import time
from pathlib import Path

import redis

from learner.layout import ShardKeys, read_offsets
from learner.operations import restore_snapshot, take_snapshot
from learner.recovery import Snapshots
from learner.redisconn import connect
from learner.settings import LearnerSettings
from snapshots.codec import decode, read_header, signed_with
from snapshots.codec import resign as resign_blob
from snapshots.errors import SnapshotError, StoreUnavailableError
from snapshots.settings import SigningSettings, SnapshotSettings
from snapshots.store import SUFFIX
from stream.settings import StreamSettings


def _snapshots() -> Snapshots:
    return Snapshots.from_settings(SnapshotSettings(), SigningSettings())


def _context() -> tuple[redis.Redis, ShardKeys, Snapshots]:
    stream = StreamSettings()
    keys = ShardKeys(stream.key_prefix, LearnerSettings().shard)
    return connect(stream), keys, _snapshots()


def list_(args: argparse.Namespace) -> int:
    snapshots = _snapshots()
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
    print(f"{len(infos)} snapshots in {snapshots.store.location}")
    return 0


def create(args: argparse.Namespace) -> int:
    client, keys, snapshots = _context()
    result = take_snapshot(client, keys, snapshots)
    print(f"snapshot {result['snapshot_id']} of version {result['version']}")
    return 0


def verify(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    accepted = SigningSettings().verify_keys()
    current = accepted[0]
    keys = (current,) if args.current_key_only else accepted
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
    """Re-sign with the signing key every snapshot of the store signed otherwise: with a
    previous key, or (format 1) with a legacy HMAC key of HEADRACE_SNAPSHOT_LEGACY_KEYS."""
    from tqdm import tqdm

    settings = SnapshotSettings()
    signing = SigningSettings()
    signer = signing.signer()
    snapshots = Snapshots.from_settings(settings, signing)
    listed = [i.snapshot_id for i in snapshots.store.list()]
    # Files that do not list may be format 1 (legacy keys) or signed with no accepted key:
    # resign_blob tells which, and refuses the latter.
    others = [r.name[: -len(SUFFIX)] for r in snapshots.store.rejected()]
    done = already = 0
    ids = listed + others
    for snapshot_id in tqdm(ids, unit="file", disable=len(ids) < 5, file=sys.stderr):
        try:
            blob = snapshots.store.get(snapshot_id)
        except StoreUnavailableError:
            raise
        except SnapshotError:
            continue  # removed by retention while we went through the store, or a bad name
        if signed_with(blob, signer.public):
            already += 1
            continue
        try:
            again = resign_blob(blob, snapshots.accepted, signer, legacy=signing.legacy_keys())
        except SnapshotError:
            continue  # still refused: listed below with the reason
        snapshots.store.put(snapshot_id, again)
        done += 1
    refused = snapshots.store.rejected()
    for rejected in refused:
        print(f"refused: {rejected.name}: {rejected.reason}", file=sys.stderr)
    print(
        f"{done} re-signed, {already} already signed with the current key, "
        f"{len(refused)} refused, in {snapshots.store.location}"
    )
    return 1 if refused else 0


def restore(args: argparse.Namespace) -> int:
    client, keys, snapshots = _context()
    result = restore_snapshot(client, keys, snapshots, args.snapshot, replay=not args.no_replay)
    print(f"restored {result['snapshot_id']} as version {result['version']}")
    if not args.no_replay and not args.no_wait:
        header = read_header(snapshots.store.get(result["snapshot_id"]), snapshots.accepted)
        _follow_replay(client, keys, header.offsets)
    return 0


def _follow_replay(client: redis.Redis, keys: ShardKeys, offsets: dict[int, int]) -> None:
    """A progress bar while the learner replays from `offsets` (the snapshot's) to the end
    of its partitions."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition
    from tqdm import tqdm

    stream = StreamSettings()
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
            # The committed offsets only (JSON): following a replay deserializes nothing.
            committed = read_offsets(client, keys)
            if not committed or not client.exists(keys.lease):
                break
            position = sum(min(committed.get(p, 0), end) for p, end in ends.items())
            bar.update(position - start - done)
            done = position - start
    if done < total:
        # Said on stdout, as the summary: the replay resumes with the next learner.
        print(f"replayed {done} of {total} events; the learner stopped, the next one goes on")
        return
    print(f"replayed {total} events")
