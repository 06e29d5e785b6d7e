"""Settings of the drift, fraud and rollback guards (env prefix HEADRACE_).

Built by each composition root, never at import time. Every threshold is
here, each with a master switch per rule; docs/guards.md says how to tune
them. The defaults were measured on the simulator's store and on seeded
synthetic streams (tests/guards).
"""

from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from guards.errors import GuardConfigError


class GuardSettings(BaseSettings):
    """Thresholds of every guard rule and detector."""

    # The salt is a key: an error that refuses it must not print it.
    model_config = SettingsConfigDict(
        env_prefix="HEADRACE_", extra="ignore", hide_input_in_errors=True
    )

    guards_enabled: bool = True
    """Master switch: off, no rule quarantines, no detector alerts, no rollback is decided."""

    target: Literal["purchase", "click"] = "purchase"
    """The positive outcome (the learner's HEADRACE_TARGET): the label a flip attack inflates."""

    # -- drift ------------------------------------------------------------

    drift_enabled: bool = True
    """Drift detectors on the progressive loss, the inputs and the predictions."""

    drift_loss_clip: float = Field(default=5.0, gt=0)
    """Per-example log loss is clipped here (p = 0.7 %): one confident miss must not look like
    drift; at a 5 % positive rate a clean mean loss is about 0.1 to 0.2."""

    drift_warmup: int = Field(default=10_000, ge=100)
    """Examples after a start, a reset or a loss alert before the detectors arm. A fresh model's
    loss falls steeply at first; the second half of the warm-up sets the loss scale."""

    drift_block: int = Field(default=100, ge=1)
    """Loss detectors see mean losses of this many examples: a block of 100 at a 5 % positive
    rate holds about 5 positives, which tames the heavy tail (and costs 1/100th)."""

    drift_min_increase: float = Field(default=0.3, ge=0)
    """A detection is an alert only if the recent mean loss is this much above the mean loss
    before it (0.3: +30 %); detectors also fire on decreases and on noise."""

    drift_reference_blocks: int = Field(default=100, ge=1)
    """Blocks before the recent ones that make "the mean loss before it" (a sliding window,
    so a loss that creeps up slowly as the store fills is not a drift)."""

    drift_recent_blocks: int = Field(default=8, ge=1)
    """Blocks that make the recent mean loss compared with `drift_min_increase`."""

    drift_adwin_enabled: bool = True
    """ADWIN on the block mean loss (relative to the warm-up's scale)."""

    drift_adwin_delta: float = Field(default=0.002, gt=0, lt=1)
    """ADWIN's confidence (River's default). On block means it fired not once in 10 x 200,000
    clean examples; it is the slower, steadier witness next to Page-Hinkley."""

    drift_ph_enabled: bool = True
    """Page-Hinkley (increases only) on the block mean loss relative to the warm-up's scale."""

    drift_ph_delta: float = Field(default=0.2, ge=0)
    """Page-Hinkley's tolerated excess per block, in units of the loss scale (20 %): a block's
    mean loss varies by about 35 % of the scale at a 5 % positive rate."""

    drift_ph_threshold: float = Field(default=7.0, gt=0)
    """Page-Hinkley's alarm level, in loss-scale units summed over blocks: a loss that doubles
    crosses it in about 9 blocks; on 10 x 200,000 clean examples it peaked at 1.9 to 3.2."""

    drift_error_enabled: bool = True
    """A one-sided adaptive window (guards/rising.py: ADWIN's test, rises only) on the
    progressive 0/1 error (the prediction at `drift_error_cut` against the label), fed every
    example from the start: the signal River's own benchmarks watch. A drift that makes the
    model wrong more often shows there within a few hundred examples, long before block
    means of the log loss move (a short rise of the log loss sits inside their noise)."""

    drift_error_delta: float = Field(default=0.0005, gt=0, lt=1)
    """The window's strict confidence: for falls, and for a rise against an older part
    that is mostly the low a fall cut kept. River's 0.002 there alarmed twice on clean
    RandomRBF streams whose model's error wanders between 0.30 and 0.39 (bench/drift.py):
    a fall cut keeps a selected low, and the next upward wander looks like a rise."""

    drift_error_delta_settled: float = Field(default=0.002, gt=0, lt=1)
    """The window's confidence for a rise against a settled older part (River's ADWIN
    default): at the strict one alone, River's FriedmanDrift gradual (its error up by a
    third for 2,000 examples) was found up to 960 examples after River's ADWIN, or missed."""

    drift_error_settled: int = Field(default=16, ge=0)
    """An older part is settled when it holds at least this many times the examples the
    last fall cut kept (always, when no fall cut made the window). At 4, a clean RandomRBF
    stream raised one false alarm in 40,000 examples, and at 8 one more than the strict
    confidence alone in 200,000; 0 judges every rise at `drift_error_delta_settled`."""

    drift_error_min_increase: float = Field(default=0.15, ge=0)
    """A significant rise is an alert only if the newer error rate is more than this much
    above the older one (relative: 0.15 is +15 %). On bench/drift.py's clean streams the
    significant rises were at most +17 % (RandomRBF, at River's confidence); the drifts'
    first rises were +19 % to many times."""

    drift_error_label_mix: bool = True
    """Judge a rise of the error against what the label rate explains: the older part's
    error on positives and on negatives, mixed at the newer part's positive rate. A model
    that never predicts 0.5 at a 5 % purchase rate has the purchase rate for its error, and
    purchases come in clusters: on the store simulator's clean streams (bench/false_alarms.py)
    such clusters opened error alerts, and the learner re-learned fast for nothing. A rise
    is an alert only if the newer error is more than `drift_error_min_increase` above the
    higher of the older error and that mix. Off: against the older error alone."""

    drift_error_cut: float = Field(default=0.5, gt=0, lt=1)
    """A prediction at or above this says "positive" for the 0/1 error."""

    drift_loss_window_enabled: bool = True
    """The same one-sided window as the error's (guards/rising.py), on the mean of each
    example's log loss clipped at `drift_loss_window_clip`, fed every example from the
    start. River's FriedmanDrift gradual renames its inputs (all independent uniforms): the
    inputs and the label rate cannot move, and its error rises inside the wander of a clean
    RandomRBF stream's; the log loss moves further (bench/drift.py, 8 seeds: the error
    window and River's ADWIN on the error both missed 4, this window none)."""

    drift_loss_window_clip: float = Field(default=4.605, gt=0)
    """Per-example log loss clip for this window, -ln(0.01): one confidently wrong example
    weighs as much as about 12 typical ones at a loss of 0.37, not 100."""

    drift_loss_window_delta: float = Field(default=0.01, gt=0, lt=1)
    """Its strict confidence: for falls, and for a rise against an older part that is
    mostly the low a fall cut kept."""

    drift_loss_window_delta_settled: float = Field(default=0.05, gt=0, lt=1)
    """Its confidence for a rise against a settled older part. Looser than the error's:
    on the log loss the clean streams' largest excursions are further from the drifts'."""

    drift_loss_window_settled: int = Field(default=4, ge=0)
    """An older part is settled at this many times the examples the last fall cut kept."""

    drift_loss_window_min_increase: float = Field(default=0.1, ge=0)
    """A significant rise is an alert only if the newer mean loss is more than this much
    above the older one (relative)."""

    drift_loss_label_mix: bool = True
    """Judge a rise of that window's mean log loss against what the label rate explains, as
    `drift_error_label_mix` does for the error: the older part's mean loss on positives and
    on negatives, mixed at the newer part's positive rate. At a 5 % purchase rate the loss
    on a purchase (about 3) is some 60 times the loss on a non-purchase, and purchases come
    in clusters: on the store simulator's clean streams such a cluster read as a rise, and
    the learner adapted for nothing. A rise is an alert only if the newer mean is more than
    `drift_loss_window_min_increase` above the higher of the older mean and that mix. Off:
    against the older mean alone."""

    drift_label_enabled: bool = True
    """An adaptive window (guards/rising.py: ADWIN's test at one confidence, both ways) on
    the label rate, fed every example from the start. A new concept whose positives are
    more or less common shows there even when the model does no worse on it: on River's
    RandomRBFDrift with new centroids (seed 0) the error fell, 0.362 to 0.347, while the
    positive rate went from 0.44 to 0.60, alerted 352 examples after the drift."""

    drift_label_delta: float = Field(default=0.0002, gt=0, lt=1)
    """Its confidence. On the labels of bench/drift.py's clean streams (9 generators, 8
    seeds, 200,000 examples each) River's 0.002 raised four alerts (Sine seed 4, Friedman
    seed 2: a run of a thousand labels 18 to 26 % off and back), 0.0005 two, 0.0002 one
    (Sine seed 4, +18 %), while RandomRBFDrift's new centroids were found 288 to 672
    examples after the drift on 5 of 8 seeds (seed 0: +384)."""

    drift_label_min_change: float = Field(default=0.1, ge=0)
    """A significant change is an alert only if the newer rate is more than this much above
    or below the older one (relative: 0.1 is 10 %). At a 5 % positive rate the window's own
    test already needs about 15 % over 65,000 examples; at 50 % about 3.5 %."""

    drift_ranking_enabled: bool = True
    """Watch the ROC AUC of the served predictions (guards/ranking.py): a drift that
    reorders what shoppers buy shows there long before the log loss moves."""

    drift_ranking_window: int = Field(default=1_000, ge=50)
    """Recent examples whose AUC is compared with the reference's."""

    drift_ranking_reference: int = Field(default=5_000, ge=50)
    """Examples before the recent window that make the reference AUC."""

    drift_ranking_every: int = Field(default=250, ge=1)
    """Examples between two comparisons."""

    drift_ranking_min_drop: float = Field(default=0.1, gt=0, lt=1)
    """Least fall of the AUC that alerts ..."""

    drift_ranking_z: float = Field(default=4.0, gt=0)
    """... when it is also at least this many standard errors of the recent AUC."""

    drift_kswin_enabled: bool = True
    """KSWIN (two-sample Kolmogorov-Smirnov) on numeric input features."""

    drift_kswin_features: list[str] = ["price", "u_cvr", "i_cvr"]
    """Numeric features KSWIN watches, as JSON: '["price", "u_cvr"]'."""

    drift_kswin_every: int = Field(default=200, ge=1)
    """KSWIN sees every Nth example: one KS test costs about 180 microseconds against a
    learner budget of 30 per event; 1 in 200 costs under 1 per feature."""

    drift_kswin_alpha: float = Field(default=1e-5, gt=0, lt=1)
    """KSWIN's p-value threshold. It tests at every update, so River's 0.005 alarms every few
    hundred updates of a clean stream; at 1e-4 (window 100) one in 18,000 tests still did."""

    drift_kswin_window: int = Field(default=200, ge=10)
    """KSWIN's sliding window, in sampled values (200 x 200 = the last 40,000 examples)."""

    drift_kswin_stat_size: int = Field(default=60, ge=5)
    """KSWIN's recent sub-window, compared with a sample of the older part: 60 values detect a
    one-standard-deviation shift after about 50 samples (10,000 examples)."""

    drift_kswin_seed: int = 0
    """Seed of KSWIN's sampling: fixed, so a replay detects exactly the same."""

    drift_psi_enabled: bool = True
    """Population stability index of inputs and predictions against a reference window."""

    drift_psi_features: list[str] = ["price", "log_position", "category", "device"]
    """Features (numeric or categorical) whose PSI is watched, as JSON. Not the u_*/i_*
    aggregates by default: they keep moving while the aggregates fill up (their first day)."""

    drift_psi_predictions: bool = False
    """Also watch the PSI of the model's predictions. Off by default: a model that keeps
    sharpening on a concept it can separate moves its predictions for good, with no drift
    (River's STAGGER, clean: PSI 0.9 to 2.0 at every window); the error, loss and ranking
    detectors watch the model's quality itself."""

    drift_psi_window: int = Field(default=5_000, ge=100)
    """Examples in the reference window and in each compared window: at 5,000 and 10 bins the
    PSI of two samples of one distribution is about 0.004, far below any threshold."""

    drift_psi_bins: int = Field(default=10, ge=2, le=100)
    """Quantile bins of a numeric feature (categorical ones: up to 50 values plus 'other')."""

    drift_psi_threshold: float = Field(default=0.25, gt=0)
    """PSI that raises an alert: 0.25 is the usual 'significant shift' line (0.1 to 0.25 is
    'moderate'). After an alert the next window becomes the new reference."""

    # -- fraud ------------------------------------------------------------

    fraud_enabled: bool = True
    """Fraud and poisoning rules, applied before an event can be learned."""

    fraud_ban_s: float = Field(default=21_600.0, ge=0)
    """Event-time seconds a user stays quarantined after a bot rule fired; every new violation
    extends it. Bots come back within minutes to hours; no simulated shopper ever trips those
    rules, and quarantined events can be replayed after review."""

    fraud_rate_enabled: bool = True
    """Per-user token bucket over all of a user's events."""

    fraud_rate_burst: float = Field(default=300.0, ge=1)
    """Bucket size. A page is about 10 impressions; the simulator's heaviest shopper (a third of
    all sessions with seed 3) has 41 events in one second and 126 in ten."""

    fraud_rate_per_s: float = Field(default=10.0, gt=0)
    """Refill per event-time second (36,000 events an hour): a flood guard against scrapers and
    runaway producers; that heaviest shopper sustains 4 per second."""

    fraud_outcome_burst_enabled: bool = True
    """A user's repeated outcome of one type for one impression (a clicker, a replay with new
    event ids): the join learns it once but the aggregates would count it again."""

    fraud_storm_enabled: bool = True
    """Purchase storm: more purchases than a person makes in a short time."""

    fraud_storm_purchases: int = Field(default=10, ge=1)
    """Purchases allowed in one burst (token bucket size). Bots buy 8 to 24 within a second;
    the simulator's heaviest shopper bought 3 within 1 s, 6 within 5 s and 13 within 60 s,
    which took a bucket of 5 down to 0.1 token: too close to a ban."""

    fraud_storm_window_s: float = Field(default=10.0, gt=0)
    """The bucket refills `fraud_storm_purchases` per this many seconds (1/s by default)."""

    fraud_noimp_enabled: bool = True
    """Purchases without an impression: no impression id and no impression of the user within
    `fraud_noimp_window_s`."""

    fraud_noimp_share: float = Field(default=0.5, gt=0, le=1)
    """Largest share of such purchases among a user's purchases."""

    fraud_noimp_min_purchases: int = Field(default=3, ge=1)
    """The share is judged from this many purchases of the user on."""

    fraud_noimp_window_s: float = Field(default=1_800.0, gt=0)
    """An impression this recent covers an id-less purchase (the join's attribution window)."""

    fraud_timing_enabled: bool = True
    """Inhuman timing: outcomes of one impression, or actions in a row, faster than people."""

    fraud_timing_chain_ms: float = Field(default=1_000.0, ge=0)
    """Least time between two outcomes (click, cart, purchase) of one impression: a person
    needs seconds to open an item, add it to the cart and pay; the bots take 150 ms."""

    fraud_timing_gap_ms: float = Field(default=100.0, gt=0)
    """A gap between two actions of a user (any impressions) below this is fast ..."""

    fraud_timing_streak: int = Field(default=5, ge=1)
    """... and this many fast gaps in a row make a bot. A busy shopper's actions from several
    open pages interleave at random: at one action a second, 5 fast gaps in a row happen
    once in about 100,000 actions; 4 gaps under 250 ms banned heavy shoppers."""

    fraud_range_enabled: bool = True
    """Out-of-range values: price <= 0 or above the maximum, position above the maximum."""

    fraud_max_price: float = Field(default=10_000.0, gt=0)
    """Highest plausible price (the schema allows 1,000,000; the yarn store tops out near 200)."""

    fraud_max_position: int = Field(default=200, ge=0)
    """Highest plausible position on a page (the schema allows 10,000)."""

    fraud_vocab_enabled: bool = True
    """Never-seen categorical values, once the vocabulary is learned."""

    fraud_vocab_fields: list[str] = ["category", "device"]
    """Fields checked, among category, device, page, brand."""

    fraud_vocab_warmup: int = Field(default=10_000, ge=1)
    """Impressions that teach the vocabulary before unseen values are quarantined."""

    fraud_vocab_max: int = Field(default=1_000, ge=1)
    """Most values kept per field (bounds the guard's state)."""

    fraud_flip_enabled: bool = True
    """Label-flip bursts: a cohort's recent positive rate far above its rate before."""

    fraud_flip_cohorts: int = Field(default=16, ge=1, le=4096)
    """Cohorts are keyed-hash buckets of user_id: stable, bounded, not chosen by the user, and
    small enough (1/16 of the traffic) that a few dozen accounts move their rate. A device
    cohort would dilute them among a third of the store and quarantine a third of its sales."""

    fraud_flip_salt: SecretStr | None = None
    """Key of the cohort hash, so an attacker cannot grind user ids into one cohort. Unset: a
    new guard draws a random key, kept in its committed state (restarts, takeovers, restores
    and replays from a snapshot keep their cohorts). Set it (16+ characters) for the same
    cohorts in independent learners, e.g. two runs from scratch that must decide alike."""

    fraud_flip_short_half_life_s: float = Field(default=900.0, gt=0)
    """Half-life of the recent rate (event time, 15 min)."""

    fraud_flip_long_half_life_s: float = Field(default=86_400.0, gt=0)
    """Half-life of the long-run counts (event time, a day); the baseline is the long-run
    counts minus the recent ones, so a burst does not raise its own yardstick."""

    fraud_flip_ratio: float = Field(default=3.0, gt=1)
    """Recent rate over the baseline rate that makes a burst (shoppers peaked at 1.9) ..."""

    fraud_flip_z: float = Field(default=5.0, gt=0)
    """... if the recent positives are also this many binomial standard deviations above the
    baseline's expectation (shoppers peaked at 4.0)."""

    fraud_flip_min_impressions: float = Field(default=200.0, ge=1)
    """Recent (decayed) impressions a cohort needs before its rate is judged; the simulator's
    cohorts hold about 800."""

    fraud_flip_min_long_impressions: float = Field(default=2_000.0, ge=1)
    """Impressions before the recent window a cohort needs to have a baseline (about an hour
    of the simulator's traffic)."""

    # -- rollback ---------------------------------------------------------

    rollback_enabled: bool = True
    """Decide a rollback when the served model is worse than the shadow last-known-good."""

    rollback_window: int = Field(default=2_000, ge=10)
    """Examples in the rolling window of both losses."""

    rollback_min_events: int = Field(default=1_000, ge=10)
    """Examples in the window before a decision is possible."""

    rollback_rel_margin: float = Field(default=0.1, ge=0)
    """Served mean loss must exceed the shadow's by this fraction (10 %): log loss scales with
    the positive rate, so a relative margin means the same for every model ..."""

    rollback_abs_margin: float = Field(default=0.005, ge=0)
    """... and by this much in absolute terms, so near-zero losses do not flap ..."""

    rollback_z: float = Field(default=5.0, gt=0)
    """... and the paired difference must be this many standard errors above zero."""

    rollback_loss_clip: float = Field(default=5.0, gt=0)
    """Per-example losses are clipped here, as for drift."""

    rollback_cooldown: int = Field(default=20_000, ge=0)
    """Examples after a decision before the next one (kept across reset: no flapping)."""

    @field_validator("fraud_flip_salt")
    @classmethod
    def _check_salt(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("fraud_flip_salt must have at least 16 characters")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.drift_kswin_stat_size >= self.drift_kswin_window:
            raise GuardConfigError("drift_kswin_stat_size must be smaller than drift_kswin_window")
        if self.rollback_min_events > self.rollback_window:
            raise GuardConfigError("rollback_min_events must not exceed rollback_window")
        unknown = set(self.fraud_vocab_fields) - {"category", "device", "page", "brand"}
        if unknown:
            raise GuardConfigError(f"fraud_vocab_fields: unknown {sorted(unknown)}")
        return self
