//! The metric registry, the hot-path [`Recorder`] and once-a-second collection.
//!
//! See the [module documentation](super) for why recording goes through
//! per-thread stripes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;

/// Highest latency a histogram tracks, in microseconds (one hour). Larger
/// values are clamped to it rather than dropped.
pub const HIGHEST_TRACKABLE_US: u64 = 3_600_000_000;

/// Significant decimal digits kept by every latency histogram.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// A new, empty latency histogram: 1 µs .. 1 h, 3 significant digits.
///
/// Every histogram of the registry has exactly these bounds, so adding one to
/// another never fails and never reallocates.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_TRACKABLE_US, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Interned id of a latency metric, valid only for the registry that issued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LatencyId(u32);

/// Interned id of a counter, valid only for the registry that issued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CounterId(u32);

/// Interned id of a gauge (a last-value reading such as CPU percent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GaugeId(u32);

/// Source of unique registry ids, used to key the thread-local stripe table.
static NEXT_REGISTRY_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The stripes this thread records into, one per live registry it used.
    static LOCAL_STRIPES: RefCell<Vec<(u64, Arc<Stripe>)>> = const { RefCell::new(Vec::new()) };
}

/// Locks a mutex, ignoring poisoning: every critical section here leaves the
/// data consistent even if a panic interrupts it between statements.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Grows `items` so that `index` is valid.
fn ensure_len<T>(items: &mut Vec<T>, index: usize, fill: impl FnMut() -> T) {
    if index >= items.len() {
        items.resize_with(index + 1, fill);
    }
}

/// Name <-> id table for one kind of metric.
#[derive(Default)]
struct Interner {
    names: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u32>,
}

impl Interner {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 metric names");
        let name: Arc<str> = Arc::from(name);
        self.names.push(Arc::clone(&name));
        self.index.insert(name, id);
        id
    }
}

/// The three name tables.
#[derive(Default)]
struct Names {
    latency: Interner,
    counter: Interner,
    gauge: Interner,
}

/// Which name table an operation concerns.
#[derive(Clone, Copy)]
enum Kind {
    Latency,
    Counter,
    Gauge,
}

impl Kind {
    fn table(self, names: &Names) -> &Interner {
        match self {
            Kind::Latency => &names.latency,
            Kind::Counter => &names.counter,
            Kind::Gauge => &names.gauge,
        }
    }

    fn table_mut(self, names: &mut Names) -> &mut Interner {
        match self {
            Kind::Latency => &mut names.latency,
            Kind::Counter => &mut names.counter,
            Kind::Gauge => &mut names.gauge,
        }
    }
}

/// What one thread recorded since the last collection.
#[derive(Default)]
struct StripeData {
    histograms: Vec<Option<Histogram<u64>>>,
    counters: Vec<u64>,
}

/// One thread's recording area. `live` is locked by its own thread on every
/// record and by the collector once a second; `spare` is the collector's
/// double buffer, swapped with `live` histograms so the lock is held only
/// for pointer swaps, never for a merge.
#[derive(Default)]
struct Stripe {
    live: Mutex<StripeData>,
    spare: Mutex<Vec<Option<Histogram<u64>>>>,
}

impl Stripe {
    /// Moves everything recorded so far into `merged` and `deltas` (indexed
    /// by metric id) and leaves the stripe empty.
    fn drain_into(&self, merged: &mut Vec<Option<Histogram<u64>>>, deltas: &mut Vec<u64>) {
        let mut spare = lock(&self.spare);
        {
            let mut live = lock(&self.live);
            let live = &mut *live;
            for (i, histogram) in live.histograms.iter_mut().enumerate() {
                if let Some(histogram) = histogram.as_mut().filter(|h| !h.is_empty()) {
                    ensure_len(&mut spare, i, || None);
                    std::mem::swap(histogram, spare[i].get_or_insert_with(new_histogram));
                }
            }
            if deltas.len() < live.counters.len() {
                deltas.resize(live.counters.len(), 0);
            }
            for (delta, count) in deltas.iter_mut().zip(live.counters.iter_mut()) {
                *delta += std::mem::take(count);
            }
        }
        for (i, drained) in spare.iter_mut().enumerate() {
            if let Some(drained) = drained.as_mut().filter(|h| !h.is_empty()) {
                ensure_len(merged, i, || None);
                merged[i]
                    .get_or_insert_with(new_histogram)
                    .add(&*drained)
                    .expect("registry histograms share bounds");
                drained.reset();
            }
        }
    }
}

/// Last and highest value of a gauge.
#[derive(Debug, Clone, Copy, PartialEq)]
struct GaugeState {
    last: f64,
    max: f64,
}

/// Running totals, updated by each collection.
struct Collected {
    last: Instant,
    histograms: Vec<Histogram<u64>>,
    counters: Vec<u64>,
}

struct Inner {
    id: u64,
    started: Instant,
    started_at: SystemTime,
    names: RwLock<Names>,
    stripes: Mutex<Vec<Arc<Stripe>>>,
    /// Shared stripe for threads whose thread-locals are already destroyed.
    fallback: Arc<Stripe>,
    gauges: Mutex<Vec<Option<GaugeState>>>,
    collected: Mutex<Collected>,
}

impl Inner {
    fn intern(&self, kind: Kind, name: &str) -> u32 {
        let names = self.names.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(&id) = kind.table(&names).index.get(name) {
            return id;
        }
        drop(names);
        let mut names = self.names.write().unwrap_or_else(PoisonError::into_inner);
        kind.table_mut(&mut names).intern(name)
    }

    fn names(&self, kind: Kind) -> Vec<Arc<str>> {
        let names = self.names.read().unwrap_or_else(PoisonError::into_inner);
        kind.table(&names).names.clone()
    }

    /// Runs `f` on this thread's stripe, creating and registering it on first use.
    #[inline]
    fn with_live<R>(&self, f: impl FnOnce(&mut StripeData) -> R) -> R {
        let mut f = Some(f);
        let done = LOCAL_STRIPES.try_with(|cell| {
            let mut local = cell.borrow_mut();
            let pos = match local.iter().position(|(id, _)| *id == self.id) {
                Some(pos) => pos,
                None => {
                    // Stripes only this thread still holds belong to dropped registries.
                    local.retain(|(_, stripe)| Arc::strong_count(stripe) > 1);
                    let stripe = Arc::new(Stripe::default());
                    lock(&self.stripes).push(Arc::clone(&stripe));
                    local.push((self.id, stripe));
                    local.len() - 1
                }
            };
            let mut live = lock(&local[pos].1.live);
            (f.take().expect("called once"))(&mut live)
        });
        match done {
            Ok(result) => result,
            Err(_) => (f.take().expect("not called when the thread-local is gone"))(&mut lock(
                &self.fallback.live,
            )),
        }
    }
}

/// The set of metrics of one run: names, ids, per-thread stripes and the
/// cumulative totals. Cheap to clone (all clones share the same state).
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("id", &self.inner.id)
            .field("started_at", &self.inner.started_at)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A new, empty registry; its clock (interval offsets) starts now.
    pub fn new() -> Self {
        let now = Instant::now();
        let fallback = Arc::new(Stripe::default());
        Self {
            inner: Arc::new(Inner {
                id: NEXT_REGISTRY_ID.fetch_add(1, Ordering::Relaxed),
                started: now,
                started_at: SystemTime::now(),
                names: RwLock::default(),
                stripes: Mutex::new(vec![Arc::clone(&fallback)]),
                fallback,
                gauges: Mutex::default(),
                collected: Mutex::new(Collected {
                    last: now,
                    histograms: Vec::new(),
                    counters: Vec::new(),
                }),
            }),
        }
    }

    /// Wall-clock time at which the registry was created.
    pub fn started_at(&self) -> SystemTime {
        self.inner.started_at
    }

    /// Monotonic time at which the registry was created.
    pub fn started(&self) -> Instant {
        self.inner.started
    }

    /// The id of latency metric `name`, registering it if new. Same name, same id.
    pub fn latency(&self, name: &str) -> LatencyId {
        LatencyId(self.inner.intern(Kind::Latency, name))
    }

    /// The id of counter `name`, registering it if new. Same name, same id.
    pub fn counter(&self, name: &str) -> CounterId {
        CounterId(self.inner.intern(Kind::Counter, name))
    }

    /// The id of gauge `name`, registering it if new. Same name, same id.
    pub fn gauge(&self, name: &str) -> GaugeId {
        GaugeId(self.inner.intern(Kind::Gauge, name))
    }

    /// A handle for recording into this registry from any thread or task.
    pub fn recorder(&self) -> Recorder {
        Recorder {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Drains every stripe and returns what happened since the previous call
    /// (or since the registry was created), folding it into the cumulative
    /// totals. Meant to be called once a second with the current instant;
    /// the interval is `[previous now, now)`.
    pub fn collect_interval(&self, now: Instant) -> IntervalSnapshot {
        let inner = &*self.inner;
        let mut collected = lock(&inner.collected);
        // Stripes held by the registry alone belong to threads that have
        // exited: nothing can be recorded into them after this drain.
        let (stripes, dead): (Vec<Arc<Stripe>>, Vec<bool>) = lock(&inner.stripes)
            .iter()
            .map(|stripe| {
                let dead = Arc::strong_count(stripe) == 1;
                (Arc::clone(stripe), dead)
            })
            .unzip();
        let mut merged = Vec::new();
        let mut deltas = Vec::new();
        for stripe in &stripes {
            stripe.drain_into(&mut merged, &mut deltas);
        }
        if dead.contains(&true) {
            let dead: Vec<*const Stripe> = stripes
                .iter()
                .zip(&dead)
                .filter(|(_, &dead)| dead)
                .map(|(stripe, _)| Arc::as_ptr(stripe))
                .collect();
            lock(&inner.stripes).retain(|stripe| !dead.contains(&Arc::as_ptr(stripe)));
        }

        let latency_names = inner.names(Kind::Latency);
        merged.resize_with(latency_names.len(), || None);
        collected
            .histograms
            .resize_with(latency_names.len(), new_histogram);
        let mut latencies = Vec::with_capacity(latency_names.len());
        for ((name, interval), cumulative) in latency_names
            .into_iter()
            .zip(merged)
            .zip(collected.histograms.iter_mut())
        {
            let histogram = interval.unwrap_or_else(new_histogram);
            cumulative
                .add(&histogram)
                .expect("registry histograms share bounds");
            latencies.push(NamedHistogram { name, histogram });
        }

        let counter_names = inner.names(Kind::Counter);
        deltas.resize(counter_names.len(), 0);
        collected.counters.resize(counter_names.len(), 0);
        let counters = counter_names
            .into_iter()
            .zip(deltas)
            .zip(collected.counters.iter_mut())
            .map(|((name, delta), total)| {
                *total += delta;
                IntervalCounter {
                    name,
                    delta,
                    total: *total,
                }
            })
            .collect();

        let start = collected.last.saturating_duration_since(inner.started);
        let duration = now.saturating_duration_since(collected.last);
        collected.last = collected.last.max(now);
        IntervalSnapshot {
            start,
            duration,
            latencies,
            counters,
            gauges: self.gauge_readings(),
        }
    }

    /// Everything collected so far (up to the last [`collect_interval`]
    /// call): cumulative histograms, counter totals and gauges.
    ///
    /// [`collect_interval`]: Registry::collect_interval
    pub fn cumulative(&self) -> Cumulative {
        let collected = lock(&self.inner.collected);
        let latencies = self
            .inner
            .names(Kind::Latency)
            .into_iter()
            .enumerate()
            .map(|(i, name)| NamedHistogram {
                name,
                histogram: collected
                    .histograms
                    .get(i)
                    .cloned()
                    .unwrap_or_else(new_histogram),
            })
            .collect();
        let counters = self
            .inner
            .names(Kind::Counter)
            .into_iter()
            .enumerate()
            .map(|(i, name)| CounterTotal {
                name,
                total: collected.counters.get(i).copied().unwrap_or(0),
            })
            .collect();
        Cumulative {
            elapsed: collected.last.saturating_duration_since(self.inner.started),
            latencies,
            counters,
            gauges: self.gauge_readings(),
        }
    }

    /// Current reading of every gauge that has been set at least once.
    fn gauge_readings(&self) -> Vec<GaugeReading> {
        let names = self.inner.names(Kind::Gauge);
        let states = lock(&self.inner.gauges);
        names
            .into_iter()
            .zip(states.iter())
            .filter_map(|(name, state)| {
                state.map(|s| GaugeReading {
                    name,
                    last: s.last,
                    max: s.max,
                })
            })
            .collect()
    }
}

/// The hot-path recording handle. Cheap to clone; `record` and `add` take
/// an uncontended per-thread lock, index by id and never allocate once a
/// thread has recorded each metric once.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("registry", &self.inner.id)
            .finish()
    }
}

impl Recorder {
    /// Records one latency sample in microseconds (clamped to one hour).
    #[inline]
    pub fn record(&self, id: LatencyId, micros: u64) {
        self.inner.with_live(|live| {
            let i = id.0 as usize;
            ensure_len(&mut live.histograms, i, || None);
            live.histograms[i]
                .get_or_insert_with(new_histogram)
                .saturating_record(micros);
        });
    }

    /// Records a sample in each of two latency metrics (a delivery's
    /// corrected and uncorrected time) with one visit to this thread's stripe.
    #[inline]
    pub fn record_pair(&self, (a, a_micros): (LatencyId, u64), (b, b_micros): (LatencyId, u64)) {
        self.inner.with_live(|live| {
            for (id, micros) in [(a, a_micros), (b, b_micros)] {
                let i = id.0 as usize;
                ensure_len(&mut live.histograms, i, || None);
                live.histograms[i]
                    .get_or_insert_with(new_histogram)
                    .saturating_record(micros);
            }
        });
    }

    /// Records one latency sample given as a [`Duration`].
    #[inline]
    pub fn record_duration(&self, id: LatencyId, elapsed: Duration) {
        self.record(id, u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    /// Adds `n` to a counter.
    #[inline]
    pub fn add(&self, id: CounterId, n: u64) {
        self.inner.with_live(|live| {
            let i = id.0 as usize;
            ensure_len(&mut live.counters, i, || 0);
            live.counters[i] = live.counters[i].saturating_add(n);
        });
    }

    /// Adds `n` to the counter called `name`, registering it if needed.
    ///
    /// For rare paths only (a new error kind seen at run time): it hashes
    /// the name and may allocate. Hot paths register once and use [`add`].
    ///
    /// [`add`]: Recorder::add
    pub fn add_by_name(&self, name: &str, n: u64) {
        self.add(CounterId(self.inner.intern(Kind::Counter, name)), n);
    }

    /// Sets a gauge to `value`, remembering the highest value ever set.
    pub fn set_gauge(&self, id: GaugeId, value: f64) {
        let mut gauges = lock(&self.inner.gauges);
        let i = id.0 as usize;
        ensure_len(&mut gauges, i, || None);
        let max = gauges[i].map_or(value, |g| g.max.max(value));
        gauges[i] = Some(GaugeState { last: value, max });
    }
}

/// A latency histogram with the name of its metric.
#[derive(Debug, Clone)]
pub struct NamedHistogram {
    /// The metric name, e.g. `delivery.newMessage`.
    pub name: Arc<str>,
    /// Samples in microseconds.
    pub histogram: Histogram<u64>,
}

/// How a counter moved during one interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntervalCounter {
    /// The counter name, e.g. `deliveries.received`.
    pub name: Arc<str>,
    /// Increase during the interval.
    pub delta: u64,
    /// Total at the end of the interval.
    pub total: u64,
}

/// A counter's total since the start of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterTotal {
    /// The counter name.
    pub name: Arc<str>,
    /// Total since the registry was created.
    pub total: u64,
}

/// The current and highest value of a gauge.
#[derive(Debug, Clone, PartialEq)]
pub struct GaugeReading {
    /// The gauge name, e.g. `driver.cpu_percent`.
    pub name: Arc<str>,
    /// The value most recently set.
    pub last: f64,
    /// The highest value ever set.
    pub max: f64,
}

/// What happened during one collection interval.
#[derive(Debug, Clone)]
pub struct IntervalSnapshot {
    /// Offset of the interval's start from the registry's creation.
    pub start: Duration,
    /// Length of the interval.
    pub duration: Duration,
    /// One histogram per registered latency metric (empty if nothing was
    /// recorded), in registration order.
    pub latencies: Vec<NamedHistogram>,
    /// One entry per registered counter, in registration order.
    pub counters: Vec<IntervalCounter>,
    /// Every gauge set so far, at the time of collection.
    pub gauges: Vec<GaugeReading>,
}

impl IntervalSnapshot {
    /// The interval histogram of latency metric `name`.
    pub fn latency(&self, name: &str) -> Option<&Histogram<u64>> {
        find_histogram(&self.latencies, name)
    }

    /// The interval movement of counter `name`.
    pub fn counter(&self, name: &str) -> Option<&IntervalCounter> {
        self.counters.iter().find(|c| &*c.name == name)
    }

    /// Per-second rate of counter `name` over the interval (0 if unknown
    /// or if the interval is empty).
    pub fn rate(&self, name: &str) -> f64 {
        let seconds = self.duration.as_secs_f64();
        match self.counter(name) {
            Some(counter) if seconds > 0.0 => counter.delta as f64 / seconds,
            _ => 0.0,
        }
    }
}

/// Everything collected since the registry was created.
#[derive(Debug, Clone)]
pub struct Cumulative {
    /// Time from the registry's creation to the last collection.
    pub elapsed: Duration,
    /// One cumulative histogram per registered latency metric.
    pub latencies: Vec<NamedHistogram>,
    /// One total per registered counter.
    pub counters: Vec<CounterTotal>,
    /// Every gauge set so far.
    pub gauges: Vec<GaugeReading>,
}

impl Cumulative {
    /// The cumulative histogram of latency metric `name`.
    pub fn latency(&self, name: &str) -> Option<&Histogram<u64>> {
        find_histogram(&self.latencies, name)
    }

    /// The total of counter `name`.
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.counters
            .iter()
            .find(|c| &*c.name == name)
            .map(|c| c.total)
    }

    /// The reading of gauge `name`, if it was ever set.
    pub fn gauge(&self, name: &str) -> Option<&GaugeReading> {
        self.gauges.iter().find(|g| &*g.name == name)
    }
}

fn find_histogram<'a>(items: &'a [NamedHistogram], name: &str) -> Option<&'a Histogram<u64>> {
    items
        .iter()
        .find(|n| &*n.name == name)
        .map(|n| &n.histogram)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// Counts allocations made by the current thread, to prove the hot path
    /// allocation-free. Pass-through to the system allocator otherwise.
    struct CountingAlloc;

    thread_local! {
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    unsafe impl GlobalAlloc for CountingAlloc {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            // SAFETY: forwarded unchanged to the system allocator.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded unchanged to the system allocator.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: CountingAlloc = CountingAlloc;

    fn allocations() -> u64 {
        ALLOCATIONS.with(Cell::get)
    }

    #[test]
    fn ids_are_stable_and_per_kind() {
        let registry = Registry::new();
        let connect = registry.latency("connect");
        let delivery = registry.latency("delivery.newMessage");
        assert_ne!(connect, delivery);
        assert_eq!(registry.latency("connect"), connect);
        assert_eq!(registry.latency("delivery.newMessage"), delivery);
        let errors = registry.counter("errors.connect");
        assert_eq!(registry.counter("errors.connect"), errors);
        // A counter may share a name with a latency metric without clashing.
        assert_eq!(registry.counter("connect"), CounterId(1));
        assert_eq!(registry.clone().latency("connect"), connect);
    }

    #[test]
    fn a_recorded_pair_lands_in_both_metrics() {
        let registry = Registry::new();
        let (a, b) = (registry.latency("a"), registry.latency("b"));
        let recorder = registry.recorder();
        for i in 0..10 {
            recorder.record_pair((a, 100 + i), (b, 5));
        }
        let snapshot = registry.collect_interval(Instant::now());
        let (a, b) = (
            snapshot.latency("a").unwrap(),
            snapshot.latency("b").unwrap(),
        );
        assert_eq!((a.len(), a.min(), a.max()), (10, 100, 109));
        assert_eq!((b.len(), b.min(), b.max()), (10, 5, 5));
    }

    #[test]
    fn recording_from_many_threads_gives_exact_counts() {
        let registry = Registry::new();
        let latency = registry.latency("delivery.newMessage");
        let received = registry.counter("deliveries.received");
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let recorder = registry.recorder();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        recorder.record(latency, 100 + t * 1_000 + i % 500);
                        recorder.add(received, 2);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("recording thread");
        }
        let snapshot = registry.collect_interval(Instant::now());
        let interval = snapshot.latency("delivery.newMessage").expect("metric");
        assert_eq!(interval.len(), 40_000);
        assert_eq!(interval.min(), 100);
        assert_eq!(interval.max(), interval.highest_equivalent(3_599));
        let counter = snapshot.counter("deliveries.received").expect("counter");
        assert_eq!((counter.delta, counter.total), (80_000, 80_000));

        // Exited threads' stripes are pruned once drained; nothing is lost.
        assert_eq!(lock(&registry.inner.stripes).len(), 1);
        let next = registry.collect_interval(Instant::now());
        assert!(next
            .latency("delivery.newMessage")
            .expect("metric")
            .is_empty());
        assert_eq!(next.counter("deliveries.received").expect("c").delta, 0);
        let cumulative = registry.cumulative();
        assert_eq!(
            cumulative.latency("delivery.newMessage").expect("m").len(),
            40_000
        );
        assert_eq!(cumulative.counter("deliveries.received"), Some(80_000));
    }

    #[test]
    fn intervals_partition_the_run() {
        let registry = Registry::new();
        let id = registry.latency("connect");
        let recorder = registry.recorder();
        let t0 = registry.started();
        recorder.record(id, 10);
        let first = registry.collect_interval(t0 + Duration::from_secs(1));
        recorder.record(id, 20);
        recorder.record(id, 30);
        let second = registry.collect_interval(t0 + Duration::from_secs(2));
        assert_eq!(first.start, Duration::ZERO);
        assert_eq!(first.duration, Duration::from_secs(1));
        assert_eq!(second.start, Duration::from_secs(1));
        assert_eq!(first.latency("connect").expect("m").len(), 1);
        assert_eq!(second.latency("connect").expect("m").len(), 2);
        assert_eq!(
            registry.cumulative().latency("connect").expect("m").len(),
            3
        );
        assert_eq!(registry.cumulative().elapsed, Duration::from_secs(2));
    }

    #[test]
    fn lazy_counters_gauges_and_clamping() {
        let registry = Registry::new();
        let recorder = registry.recorder();
        let id = registry.latency("schedule_lag");
        recorder.record(id, HIGHEST_TRACKABLE_US * 10);
        recorder.add_by_name("errors.weird", 1);
        recorder.add_by_name("errors.weird", 2);
        let cpu = registry.gauge("driver.cpu_percent");
        recorder.set_gauge(cpu, 50.0);
        recorder.set_gauge(cpu, 20.0);
        let snapshot = registry.collect_interval(Instant::now());
        assert_eq!(snapshot.counter("errors.weird").expect("c").delta, 3);
        let lag = snapshot.latency("schedule_lag").expect("m");
        assert_eq!(lag.len(), 1);
        assert!(lag.max() >= HIGHEST_TRACKABLE_US);
        assert_eq!(
            snapshot.gauges,
            vec![GaugeReading {
                name: Arc::from("driver.cpu_percent"),
                last: 20.0,
                max: 50.0,
            }]
        );
    }

    #[test]
    fn hot_path_does_not_allocate_after_warm_up() {
        let registry = Registry::new();
        let latency = registry.latency("delivery.newMessage");
        let counter = registry.counter("deliveries.received");
        let recorder = registry.recorder();
        // Warm-up: the thread's stripe and this metric's histogram are created.
        let start = allocations();
        recorder.record(latency, 1);
        recorder.add(counter, 1);
        assert!(
            allocations() > start,
            "the counting allocator sees the warm-up"
        );
        let before = allocations();
        for i in 0..100_000u64 {
            recorder.record(latency, i % 5_000_000);
            recorder.add(counter, 1);
        }
        assert_eq!(allocations() - before, 0);
        let snapshot = registry.collect_interval(Instant::now());
        assert_eq!(
            snapshot.counter("deliveries.received").expect("c").delta,
            100_001
        );
        // After a collection swapped the double buffers, still no allocation.
        let before = allocations();
        recorder.record(latency, 42);
        recorder.add(counter, 1);
        assert_eq!(allocations() - before, 0);
    }

    #[test]
    fn registries_do_not_share_stripes() {
        let a = Registry::new();
        let b = Registry::new();
        let id_a = a.counter("emits");
        let id_b = b.counter("emits");
        a.recorder().add(id_a, 5);
        b.recorder().add(id_b, 7);
        assert_eq!(
            a.collect_interval(Instant::now())
                .counter("emits")
                .expect("c")
                .delta,
            5
        );
        assert_eq!(
            b.collect_interval(Instant::now())
                .counter("emits")
                .expect("c")
                .delta,
            7
        );
    }
}
