//! Prometheus metrics, encoded by `prometheus-client`. Label values come
//! only from configuration (source names) and fixed outcome sets, never from
//! a caller, so nobody can mint new series by sending requests.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `source` label of requests whose source is not configured.
pub const UNKNOWN_SOURCE_LABEL: &str = "_unknown";

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    accepted,
    duplicate,
    ignored,
    rejected,
    /// A provider's signed handshake (Slack, Zoom), answered, not recorded.
    challenge,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ProcessResult {
    done,
    retry,
    dead,
}

/// How a delivery attempt ended (SPEC §7).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum DeliveryResult {
    delivered,
    retry,
    dead,
}

/// What gap-fill did with a listed event (SPEC §10).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ReconcileResult {
    /// Recorded: it had never arrived by webhook.
    inserted,
    /// Missing, and GitHub was asked to deliver it again.
    redelivery_requested,
    /// Already in the ledger.
    present,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconciledLabels {
    source: String,
    result: ReconcileResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    destination: String,
    result: DeliveryResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    destination: String,
}

/// A ledger status (one of `store::admin::STATUSES`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReceivedLabels {
    source: String,
    outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessedLabels {
    source: String,
    result: ProcessResult,
}

pub struct Metrics {
    registry: Registry,
    received: Family<ReceivedLabels, Counter>,
    processed: Family<ProcessedLabels, Counter>,
    ingest_duration: Histogram,
    in_flight: Gauge,
    batch_rows: Histogram,
    batch_duration: Histogram,
    deliveries: Family<DeliveryLabels, Counter>,
    delivery_duration: Family<DestinationLabels, Histogram>,
    deliveries_pending: Family<DestinationLabels, Gauge>,
    feed_items: Counter,
    feed_streams: Gauge,
    feed_waiters: Gauge,
    reconciled: Family<ReconciledLabels, Counter>,
    /// When a scrape last recounted `deliveries_pending`, and what it took.
    pending_recount: Recount,
    events: Family<StatusLabels, Gauge>,
    oldest_pending: Gauge<f64, AtomicU64>,
    /// The same for `events` and `oldest_pending`.
    events_recount: Recount,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let received = Family::<ReceivedLabels, Counter>::default();
        registry.register(
            "hookledger_webhooks_received",
            "Webhook deliveries answered, by source and outcome",
            received.clone(),
        );
        let processed = Family::<ProcessedLabels, Counter>::default();
        registry.register(
            "hookledger_events_processed",
            "Processing attempts finished, by source and result",
            processed.clone(),
        );
        // 100 µs to ~3.3 s.
        let ingest_duration = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 16),
        );
        registry.register(
            "hookledger_ingest_duration_seconds",
            "Time from a webhook request's arrival to its answer",
            ingest_duration.clone(),
        );
        // How close the process is to shedding with 429 (`max_in_flight`);
        // also what a test waits on to know its slow requests hold their slots.
        let in_flight = Gauge::default();
        registry.register(
            "hookledger_webhooks_in_flight",
            "Webhook requests holding one of the max_in_flight slots",
            in_flight.clone(),
        );
        // Group commit, for tuning `batch_max_rows` / `batch_linger_us`:
        // how many deliveries shared a transaction, and how long it took.
        let batch_rows = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 10),
        );
        registry.register(
            "hookledger_ledger_batch_rows",
            "Deliveries recorded per ledger transaction (group commit)",
            batch_rows.clone(),
        );
        let batch_duration = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 16),
        );
        registry.register(
            "hookledger_ledger_batch_duration_seconds",
            "Time to record one batch of deliveries, commit included",
            batch_duration.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "hookledger_deliveries",
            "Delivery attempts finished, by destination and result",
            deliveries.clone(),
        );
        // 1 ms to ~33 s: a receiver's answer, or a PubAck.
        let delivery_duration =
            Family::<DestinationLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                    0.001, 2.0, 16,
                ))
            });
        registry.register(
            "hookledger_delivery_duration_seconds",
            "Time one delivery attempt took, by destination",
            delivery_duration.clone(),
        );
        let deliveries_pending = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "hookledger_deliveries_pending",
            "Deliveries not yet delivered or dead (pending, delivering, failed), by destination",
            deliveries_pending.clone(),
        );
        let feed_items = Counter::default();
        registry.register(
            "hookledger_feed_items",
            "Change feed items appended by this process's completions",
            feed_items.clone(),
        );
        let feed_streams = Gauge::default();
        registry.register(
            "hookledger_feed_streams",
            "Open /feed/stream connections",
            feed_streams.clone(),
        );
        let feed_waiters = Gauge::default();
        registry.register(
            "hookledger_feed_waiters",
            "GET /feed long polls waiting for an item",
            feed_waiters.clone(),
        );
        // For alerting (SPEC §9): a backlog that grows, an event that waits.
        let events = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "hookledger_events",
            "Ledger rows by status, counted at scrape time",
            events.clone(),
        );
        let oldest_pending = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "hookledger_oldest_pending_seconds",
            "Age of the oldest pending ledger row (0 when none is pending)",
            oldest_pending.clone(),
        );
        let reconciled = Family::<ReconciledLabels, Counter>::default();
        registry.register(
            "hookledger_reconciled",
            "Events gap-fill listed, by source and what became of them",
            reconciled.clone(),
        );
        Metrics {
            registry,
            reconciled,
            events,
            oldest_pending,
            events_recount: Recount::new(),
            feed_items,
            feed_streams,
            feed_waiters,
            received,
            processed,
            ingest_duration,
            in_flight,
            batch_rows,
            batch_duration,
            deliveries,
            delivery_duration,
            deliveries_pending,
            pending_recount: Recount::new(),
        }
    }

    /// One delivery attempt to `destination` ended with `result` after `seconds`.
    pub fn delivery_attempt(&self, destination: &str, result: DeliveryResult, seconds: f64) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                destination: destination.to_string(),
                result,
            })
            .inc();
        self.delivery_duration
            .get_or_create(&DestinationLabels {
                destination: destination.to_string(),
            })
            .observe(seconds);
    }

    /// How many deliveries to `destination` are unfinished, as last counted.
    pub fn set_deliveries_pending(&self, destination: &str, count: i64) {
        self.deliveries_pending
            .get_or_create(&DestinationLabels {
                destination: destination.to_string(),
            })
            .set(count);
    }

    /// Whether a scrape at `now_ms` should recount the pending gauge: at
    /// most once per `every_ms` (one caller wins), since `/metrics` needs no
    /// token and the count is a query; and, once a count has taken long
    /// (a large backlog), at most once per [`RECOUNT_SPACING`] times what
    /// it took.
    pub fn pending_recount_due(&self, now_ms: i64, every_ms: i64) -> bool {
        self.pending_recount.due(now_ms, every_ms)
    }

    /// What the pending gauge's last count took.
    pub fn pending_count_took(&self, took: Duration) {
        self.pending_recount.took(took);
    }

    /// The same for the ledger gauges (`events`, `oldest_pending`), which
    /// count every row of the ledger.
    pub fn events_recount_due(&self, now_ms: i64, every_ms: i64) -> bool {
        self.events_recount.due(now_ms, every_ms)
    }

    /// What the ledger gauges' last count took.
    pub fn events_count_took(&self, took: Duration) {
        self.events_recount.took(took);
    }

    /// Ledger rows by status (every status given, zeros included), and the
    /// age of the oldest pending one in seconds (0 for none).
    pub fn set_ledger_gauges<'a>(
        &self,
        by_status: impl IntoIterator<Item = (&'a str, i64)>,
        oldest_pending_secs: f64,
    ) {
        for (status, count) in by_status {
            self.events
                .get_or_create(&StatusLabels {
                    status: status.to_string(),
                })
                .set(count);
        }
        self.oldest_pending.set(oldest_pending_secs);
    }

    /// A completion commit appended `n` feed items.
    pub fn feed_items_appended(&self, n: u64) {
        self.feed_items.inc_by(n);
    }

    /// The gauge of open feed streams (`+1` on open, `-1` on close).
    pub fn feed_streams_add(&self, delta: i64) {
        self.feed_streams.inc_by(delta);
    }

    /// The gauge of waiting long polls (`+1` when one starts waiting, `-1`
    /// when it stops).
    pub fn feed_waiters_add(&self, delta: i64) {
        self.feed_waiters.inc_by(delta);
    }

    /// Gap-fill listed `n` events of `source` that ended as `result`.
    pub fn reconciled(&self, source: &str, result: ReconcileResult, n: u64) {
        self.reconciled
            .get_or_create(&ReconciledLabels {
                source: source.to_string(),
                result,
            })
            .inc_by(n);
    }

    pub fn received(&self, source: &str, outcome: Outcome) {
        self.received
            .get_or_create(&ReceivedLabels {
                source: source.to_string(),
                outcome,
            })
            .inc();
    }

    pub fn processed(&self, source: &str, result: ProcessResult) {
        self.processed
            .get_or_create(&ProcessedLabels {
                source: source.to_string(),
                result,
            })
            .inc();
    }

    pub fn observe_ingest(&self, seconds: f64) {
        self.ingest_duration.observe(seconds);
    }

    /// A webhook request took an in-flight slot ([`Metrics::left_in_flight`] when it lets go).
    pub fn entered_in_flight(&self) {
        self.in_flight.inc();
    }

    pub fn left_in_flight(&self) {
        self.in_flight.dec();
    }

    pub fn observe_batch(&self, rows: usize, seconds: f64) {
        self.batch_rows.observe(rows as f64);
        self.batch_duration.observe(seconds);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// A gauge recount spaces itself by this many times what its last count
/// took, so that counting costs at most ~2 % of the database's time: at
/// 400 000 rows on SQLite the ledger's count by status reads the whole
/// table (~2 s), which a scrape every 5 s would make 40 % of a core.
pub const RECOUNT_SPACING: u32 = 50;

/// When a gauge that costs a query was last recounted (Unix ms; `i64::MIN`:
/// never) and how long that count took (ms).
struct Recount {
    counted_at: AtomicI64,
    took_ms: AtomicI64,
}

impl Recount {
    fn new() -> Recount {
        Recount {
            counted_at: AtomicI64::new(i64::MIN),
            took_ms: AtomicI64::new(0),
        }
    }

    fn due(&self, now_ms: i64, every_ms: i64) -> bool {
        let spaced = self
            .took_ms
            .load(Ordering::Relaxed)
            .saturating_mul(i64::from(RECOUNT_SPACING));
        due(&self.counted_at, now_ms, every_ms.max(spaced))
    }

    fn took(&self, took: Duration) {
        let ms = i64::try_from(took.as_millis()).unwrap_or(i64::MAX);
        self.took_ms.store(ms, Ordering::Relaxed);
    }
}

/// Whether a recount stamped in `counted_at` is due at `now_ms`; the one
/// caller that wins the swap does it.
fn due(counted_at: &AtomicI64, now_ms: i64, every_ms: i64) -> bool {
    let last = counted_at.load(Ordering::Relaxed);
    if last != i64::MIN && now_ms.saturating_sub(last) < every_ms {
        return false;
    }
    counted_at
        .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_count_spaces_the_next_recount_by_fifty_times_its_length() {
        let metrics = Metrics::new();
        assert!(metrics.events_recount_due(0, 5_000), "never counted");
        assert!(!metrics.events_recount_due(4_999, 5_000));
        assert!(
            metrics.events_recount_due(5_000, 5_000),
            "a quick count: every 5 s"
        );
        metrics.events_count_took(Duration::from_secs(2));
        assert!(!metrics.events_recount_due(10_000, 5_000));
        assert!(!metrics.events_recount_due(104_999, 5_000));
        assert!(metrics.events_recount_due(105_000, 5_000), "100 s after");
        // The pending gauge keeps its own spacing.
        assert!(metrics.pending_recount_due(105_000, 1_000));
        metrics.pending_count_took(Duration::from_millis(40));
        assert!(!metrics.pending_recount_due(106_000, 1_000));
        assert!(metrics.pending_recount_due(107_000, 1_000));
    }

    #[test]
    fn ledger_gauges_show_every_status_given_and_the_oldest_age() {
        let metrics = Metrics::new();
        metrics.set_ledger_gauges([("pending", 3), ("done", 0)], 12.5);
        let text = metrics.encode();
        assert!(
            text.contains("hookledger_events{status=\"pending\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("hookledger_events{status=\"done\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("hookledger_oldest_pending_seconds 12.5"),
            "{text}"
        );
        assert!(metrics.events_recount_due(0, 5_000));
        assert!(!metrics.events_recount_due(4_999, 5_000));
        assert!(metrics.pending_recount_due(0, 1_000), "counted apart");
    }

    #[test]
    fn counters_appear_with_their_labels() {
        let metrics = Metrics::new();
        metrics.received("stripe", Outcome::accepted);
        metrics.received("stripe", Outcome::accepted);
        metrics.processed("stripe", ProcessResult::dead);
        metrics.observe_ingest(0.002);
        metrics.observe_batch(3, 0.001);
        metrics.entered_in_flight();
        metrics.entered_in_flight();
        metrics.left_in_flight();
        let text = metrics.encode();
        assert!(text.contains(
            "hookledger_webhooks_received_total{source=\"stripe\",outcome=\"accepted\"} 2"
        ));
        assert!(
            text.contains("hookledger_events_processed_total{source=\"stripe\",result=\"dead\"} 1")
        );
        assert!(text.contains("hookledger_ingest_duration_seconds_count 1"));
        assert!(text.contains("hookledger_ledger_batch_rows_sum 3.0"));
        assert!(text.contains("hookledger_ledger_batch_duration_seconds_count 1"));
        assert!(text.contains("hookledger_webhooks_in_flight 1"));
    }

    #[test]
    fn the_pending_gauge_is_recounted_at_most_once_per_interval() {
        let metrics = Metrics::new();
        assert!(metrics.pending_recount_due(10_000, 1_000), "never counted");
        assert!(!metrics.pending_recount_due(10_000, 1_000));
        assert!(!metrics.pending_recount_due(10_999, 1_000));
        assert!(metrics.pending_recount_due(11_000, 1_000));
        assert!(!metrics.pending_recount_due(11_500, 1_000));
    }
}
