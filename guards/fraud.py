"""Fraud and poisoning rules, applied before an event can be learned.

Per-user state lives in the user's aggregate hash under `f:` fields (floats),
so the learner persists and publishes it with the user's other aggregates;
the guard itself holds only bounded global state (the vocabulary, the
cohorts' positive rates). Time is event time throughout, so a replay decides
exactly as the first pass did. The bot rules (inhuman timing, purchase
storm, purchases without impressions) also quarantine the user for
`fraud_ban_s`; the other rules quarantine only the offending event.
"""

import hashlib
import math
import os
import zlib
from collections.abc import Mapping, MutableMapping

from guards.persisted import STATE_VERSION
from guards.settings import GuardSettings
from stream.events import Event, Impression, Labeled, Purchase, Verdict

User = MutableMapping[str, float]
_BIT = {"click": 1, "add_to_cart": 2, "purchase": 4}  # outcome types seen, per impression
_BAN_RULES = ("inhuman_timing", "purchase_storm", "purchase_without_impression")
_SLOTS = 3  # impressions whose outcomes are tracked per user: bots buy 2 or 3 per page
_SLOT_ID = tuple(f"f:o{k}i" for k in range(_SLOTS))
_SLOT_T = tuple(f"f:o{k}t" for k in range(_SLOTS))
_SLOT_BITS = tuple(f"f:o{k}b" for k in range(_SLOTS))
_MEMO_USERS = 20_000  # users whose cohort is remembered (about 3 MB)


def _bucket(user: User, name: str, at: float, size: float, per_s: float) -> bool:
    """Token bucket in fields `<name>t` (last time), `<name>k` (tokens), refilled in event
    time; takes a token if there is one."""
    last = user.get(name + "t")
    tokens = size if last is None else min(size, user[name + "k"] + max(0.0, at - last) * per_s)
    user[name + "t"] = at if last is None else max(last, at)
    user[name + "k"] = tokens - 1.0 if tokens >= 1.0 else tokens
    return tokens >= 1.0


class Cohorts:
    """Decayed impression and positive counts per cohort (a keyed hash bucket of user_id).

    The baseline is the long-run counts minus the recent ones: the history before
    the recent window, so a burst does not raise its own yardstick. Positives
    flagged as a flip never enter it.
    """

    def __init__(self, s: GuardSettings) -> None:
        salt = s.fraud_flip_salt
        # A drawn key is part of the pickled state: the committed guard keeps its cohorts.
        self._key = (
            os.urandom(16)
            if salt is None
            else hashlib.blake2b(salt.get_secret_value().encode(), digest_size=16).digest()
        )
        self._n = s.fraud_flip_cohorts
        self._short, self._long = s.fraud_flip_short_half_life_s, s.fraud_flip_long_half_life_s
        # [time, recent impressions, recent positives, recent unflagged positives,
        #  long impressions, long unflagged positives]
        self.state = [[-math.inf, 0.0, 0.0, 0.0, 0.0, 0.0] for _ in range(self._n)]
        self._memo: dict[str, int] = {}

    def of(self, user_id: str) -> int:
        cohort = self._memo.get(user_id)
        if cohort is None:
            # A keyed hash per positive and impression showed in the profile: users recur.
            if len(self._memo) >= _MEMO_USERS:
                self._memo.clear()
            digest = hashlib.blake2b(user_id.encode(), digest_size=8, key=self._key).digest()
            cohort = self._memo[user_id] = int.from_bytes(digest, "big") % self._n
        return cohort

    # The memo is derived: it is not part of the committed state.
    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state.pop("_memo", None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._memo = {}

    def add(self, cohort: int, at: float, impressions: float, positives: float) -> list[float]:
        """Count an event (positives unflagged until `flag`); returns the cohort's counts."""
        c = self.state[cohort]
        if at > c[0]:  # an older event (partitions interleave) decays nothing
            if c[0] > -math.inf:
                short, long = 0.5 ** ((at - c[0]) / self._short), 0.5 ** ((at - c[0]) / self._long)
                c[1:] = [c[1] * short, c[2] * short, c[3] * short, c[4] * long, c[5] * long]
            c[0] = at
        c[1] += impressions
        c[4] += impressions
        c[2] += positives
        c[3] += positives
        c[5] += positives
        return c

    def flag(self, cohort: int, positives: float) -> None:
        c = self.state[cohort]
        c[3] -= positives
        c[5] -= positives


class FraudGuard:
    """Every fraud rule; `check` says whether an event must be quarantined."""

    def __init__(self, settings: GuardSettings) -> None:
        self.settings = settings
        self.cohorts = Cohorts(settings)
        self.state_version = STATE_VERSION
        self.reset_vocabulary()

    def reset_vocabulary(self) -> None:
        """Learn the categorical values again from the next impressions (a new catalogue)."""
        self.vocabulary: dict[str, set[str]] = {f: set() for f in self.settings.fraud_vocab_fields}
        self.vocab_impressions = 0

    def check(self, event: Event, user: User, at: float | None = None) -> Verdict | None:
        """A verdict if `event` must be quarantined, else None; updates `user`'s `f:` fields.

        Call it for every event that is not a duplicate, in order, and persist
        `user` whatever the verdict (a ban outlives the event that caused it). `at` is
        `event.ts` as a timestamp, when the caller has it already.
        """
        s = self.settings
        if not (s.guards_enabled and s.fraud_enabled):
            return None
        if at is None:
            at = event.ts.timestamp()
        verdict, repeated = self._bot_rules(event, user, at)
        if verdict is not None:
            if at + s.fraud_ban_s > user.get("f:ban", -math.inf):
                user["f:ban"] = at + s.fraud_ban_s
                user["f:banr"] = float(_BAN_RULES.index(verdict.rule))
            return verdict
        if at < user.get("f:ban", -math.inf):
            left, rule = user["f:ban"] - at, _BAN_RULES[int(user["f:banr"])]
            return Verdict(
                "banned",
                {"banned_until": user["f:ban"], "remaining_s": left},
                f"user quarantined for another {left:.0f} s after rule {rule}",
            )
        if s.fraud_rate_enabled and not _bucket(
            user, "f:r", at, s.fraud_rate_burst, s.fraud_rate_per_s
        ):
            return Verdict(
                "rate_limit",
                {"burst": s.fraud_rate_burst, "per_s": s.fraud_rate_per_s},
                f"over {s.fraud_rate_burst:g} events at once or {s.fraud_rate_per_s:g}/s sustained",
            )
        if repeated and s.fraud_outcome_burst_enabled:
            return Verdict("outcome_burst", {}, f"another {event.type} for the same impression")
        if isinstance(event, Impression | Labeled):
            return self._content_rules(event, at)
        if s.fraud_flip_enabled and event.type == s.target:
            return self._flip(event.user_id, at, 0.0, 1.0)
        return None

    def _bot_rules(self, event: Event, user: User, at: float) -> tuple[Verdict | None, bool]:
        """The rules that ban; also whether an outcome repeats one of the same impression."""
        s = self.settings
        if isinstance(event, Impression):
            user["f:li"] = max(at, user.get("f:li", at))
            return None, False
        if event.type not in _BIT or isinstance(event, Labeled):
            return None, False
        verdict, repeated = None, False
        if event.impression_id is not None:
            gap, repeated = self._same_impression(event.impression_id, _BIT[event.type], user, at)
            if s.fraud_timing_enabled and gap * 1000.0 < s.fraud_timing_chain_ms:
                verdict = Verdict(
                    "inhuman_timing",
                    {"gap_ms": gap * 1000.0, "min_gap_ms": s.fraud_timing_chain_ms},
                    f"{event.type} {gap * 1000.0:.0f} ms after the previous outcome of its "
                    "impression",
                )
        if s.fraud_timing_enabled:
            last = user.get("f:at")
            fast = last is not None and abs(at - last) * 1000.0 < s.fraud_timing_gap_ms
            streak = user["f:fast"] = user.get("f:fast", 0.0) + 1.0 if fast else 0.0
            user["f:at"] = at if last is None else max(last, at)
            if verdict is None and streak >= s.fraud_timing_streak:
                verdict = Verdict(
                    "inhuman_timing",
                    {"streak": streak, "gap_ms": s.fraud_timing_gap_ms},
                    f"{streak:.0f} actions in a row under {s.fraud_timing_gap_ms:g} ms apart",
                )
        if isinstance(event, Purchase):
            size, span = float(s.fraud_storm_purchases), s.fraud_storm_window_s
            if s.fraud_storm_enabled and not _bucket(user, "f:s", at, size, size / span):
                verdict = verdict or Verdict(
                    "purchase_storm",
                    {"purchases": size, "window_s": span},
                    f"more than {size:.0f} purchases within {span:g} s",
                )
            if s.fraud_noimp_enabled:
                verdict = verdict or self._no_impression(event.impression_id, user, at)
        return verdict, repeated

    def _same_impression(
        self, impression_id: str, bit: int, user: User, at: float
    ) -> tuple[float, bool]:
        """Seconds since the last outcome of this impression (inf: none); whether `bit` repeats."""
        of = float(zlib.crc32(impression_id.encode()))  # a float exactly, as Redis keeps it
        slot = next((k for k in range(_SLOTS) if user.get(_SLOT_ID[k]) == of), None)
        if slot is None:  # take the slot of the impression whose last outcome is oldest
            slot = min(range(_SLOTS), key=lambda k: user.get(_SLOT_T[k], -math.inf))
            user[_SLOT_ID[slot]], user[_SLOT_T[slot]], user[_SLOT_BITS[slot]] = of, at, 0.0
            gap = math.inf
        else:
            gap = abs(at - user[_SLOT_T[slot]])
        seen = int(user[_SLOT_BITS[slot]])
        user[_SLOT_T[slot]] = max(at, user[_SLOT_T[slot]])
        user[_SLOT_BITS[slot]] = float(seen | bit)
        return gap, bool(seen & bit)

    def _no_impression(self, impression_id: str | None, user: User, at: float) -> Verdict | None:
        s = self.settings
        purchases = user["f:np"] = user.get("f:np", 0.0) + 1.0
        if impression_id is not None or user.get("f:li", -math.inf) >= at - s.fraud_noimp_window_s:
            return None
        unseen = user["f:nn"] = user.get("f:nn", 0.0) + 1.0
        share = unseen / purchases
        if purchases < s.fraud_noimp_min_purchases or share <= s.fraud_noimp_share:
            return None
        return Verdict(
            "purchase_without_impression",
            {"share": share, "purchases": purchases, "max_share": s.fraud_noimp_share},
            f"{100 * share:.0f}% of the user's {purchases:.0f} purchases follow no impression",
        )

    def _content_rules(self, event: Impression | Labeled, at: float) -> Verdict | None:
        s = self.settings
        if isinstance(event, Impression):
            price: object = event.item.price
            position: object = event.context.position
            item, context = event.item, event.context
            values = {"category": item.category, "device": context.device, "page": context.page}
            values["brand"] = item.brand or "none"
        else:
            price, position = event.features.get("price"), event.features.get("position")
            values = {k: v for k, v in event.features.items() if isinstance(v, str)}
        if s.fraud_range_enabled:
            if isinstance(price, float | int) and not 0.0 < price <= s.fraud_max_price:
                return Verdict(
                    "out_of_range",
                    {"price": float(price), "max_price": s.fraud_max_price},
                    f"price {price:g} outside (0, {s.fraud_max_price:g}]",
                )
            if isinstance(position, float | int) and not 0 <= position <= s.fraud_max_position:
                return Verdict(
                    "out_of_range",
                    {"position": float(position), "max_position": float(s.fraud_max_position)},
                    f"position {position:g} outside [0, {s.fraud_max_position}]",
                )
        if s.fraud_vocab_enabled:
            verdict = self._vocabulary(values, learn=isinstance(event, Impression))
            if verdict is not None:
                return verdict
        if not s.fraud_flip_enabled:
            return None
        positive = isinstance(event, Labeled) and event.label
        return self._flip(event.user_id, at, 1.0, 1.0 if positive else 0.0)

    def _vocabulary(self, values: Mapping[str, str], learn: bool) -> Verdict | None:
        s = self.settings
        if self.vocab_impressions < s.fraud_vocab_warmup:
            if learn:
                self.vocab_impressions += 1
                for name, known in self.vocabulary.items():
                    if name in values and len(known) < s.fraud_vocab_max:
                        known.add(values[name])
            return None
        for name, known in self.vocabulary.items():
            if name in values and values[name] not in known:
                return Verdict(
                    "never_seen",
                    {"known_values": float(len(known))},
                    f"{name} {values[name]!r} never seen in the first {s.fraud_vocab_warmup} "
                    "impressions",
                )
        return None

    def _flip(
        self, user_id: str, at: float, impressions: float, positives: float
    ) -> Verdict | None:
        s = self.settings
        cohort = self.cohorts.of(user_id)
        c = self.cohorts.add(cohort, at, impressions, positives)
        older = c[4] - c[1]
        if not positives or c[1] < s.fraud_flip_min_impressions:
            return None
        if older < s.fraud_flip_min_long_impressions:
            return None
        base, rate = max(c[5] - c[3], 0.0) / older, c[2] / c[1]
        z = (c[2] - base * c[1]) / math.sqrt(max(base * (1.0 - base) * c[1], 1e-9))
        if rate <= s.fraud_flip_ratio * base or z <= s.fraud_flip_z:
            return None
        self.cohorts.flag(cohort, positives)
        return Verdict(
            "label_flip",
            {"cohort": float(cohort), "rate": rate, "long_run_rate": base, "z": z},
            f"cohort {cohort}: recent positive rate {100 * rate:.1f}% against "
            f"{100 * base:.1f}% before (z = {z:.1f})",
        )
