//! `chorus run`: plays a scenario against a gateway, measures every delivery,
//! and writes the run directory.
//!
//! The flow of a run: resolve the target (or start the reference gateway
//! in-process), start virtual users as the load phases say, collect metrics
//! once a second (interval logs, time series, progress, early abort), and at
//! the end stop the senders, let in-flight deliveries drain, disconnect
//! everyone, settle the delivery ledger and write `summary.json`.

mod context;
mod correlate;
mod failure;
mod ledger;
mod live;
mod liveness;
mod merge;
mod phases;
mod progress;
mod receiver;
mod roster;
mod settlement;
mod shard;
mod target;
mod violations;
mod vu;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chorus_gateway::Profile;
use tokio::sync::watch;

use crate::client::ClientConfig;
use crate::metrics::{
    HealthSampler, IntervalLogs, MetricsError, Registry, RunInfo, Summary, TimeSeries, Verdict,
};
use crate::report::render_table;
use crate::rules::ProtocolModel;
use crate::scenario::{Override, Phase, Scenario, ScenarioError, TokenSource};

pub use ledger::{
    settle, Finding, LedgerFile, LedgerTotals, ReceiverRecord, SenderFacts, SeqRuns, Settlement,
    Window,
};
pub use merge::merge;
pub use shard::{parse_start_at, Shard};
pub use violations::Kind as ViolationKind;

use context::Context;
use progress::{Progress, Tick};
use target::Target;

/// A receiver is owed messages sent this long after it entered the namespace.
const LEDGER_MARGIN: Duration = Duration::from_millis(100);
/// A message must reach its receivers within this long to count as delivered
/// to a receiver that leaves; it is also the drain time at the end of a run.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(2);
/// How long virtual users may take to finish after the last phase, when the
/// scenario sets no `max_duration`.
const DEFAULT_GRACE: Duration = Duration::from_secs(60);

/// What `chorus run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The scenario file.
    pub scenario: PathBuf,
    /// `--target`: overrides the scenario's target.
    pub target: Option<String>,
    /// `--out`: the run directory (default `reports/runs/<timestamp>-<scenario>/`).
    pub out: Option<PathBuf>,
    /// `--set key=value` overrides.
    pub overrides: Vec<Override>,
    /// No progress display.
    pub quiet: bool,
    /// Profile of the embedded gateway, when no target is given.
    pub gateway_profile: Profile,
    /// This process's part of a distributed run (`Shard::WHOLE` for all of it).
    pub shard: Shard,
    /// When to start (all shards of a distributed run start together).
    pub start_at: Option<SystemTime>,
    /// Serve live metrics in the Prometheus format here during the run.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Take over SIGINT and SIGTERM for the run: either stops it cleanly
    /// (partial results written, exit 3) instead of killing the process.
    /// The command line sets it; a library caller decides (tokio keeps the
    /// handlers installed for the rest of the process).
    pub handle_signals: bool,
}

impl RunOptions {
    /// Options for playing `scenario` as the command line's defaults would:
    /// the embedded strict gateway unless the scenario names a target, the
    /// default run directory, progress shown, the whole run in this process
    /// (SIGINT and SIGTERM left to their default action).
    pub fn new(scenario: impl Into<PathBuf>) -> Self {
        Self {
            scenario: scenario.into(),
            target: None,
            out: None,
            overrides: Vec::new(),
            quiet: false,
            gateway_profile: Profile::Strict,
            shard: Shard::WHOLE,
            start_at: None,
            metrics_addr: None,
            handle_signals: false,
        }
    }
}

/// Why a run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario does not load.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The target does not answer.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The target URL.
        url: String,
        /// What connecting said.
        reason: String,
    },
    /// The embedded gateway did not start.
    #[error("cannot start the embedded gateway: {0}")]
    Gateway(String),
    /// Writing results failed.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The live metrics endpoint cannot listen.
    #[error("cannot serve metrics on {addr}: {source}")]
    MetricsAddr {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A signal came before the run started.
    #[error("interrupted by {signal} before the run started")]
    Interrupted {
        /// `SIGINT` or `SIGTERM`.
        signal: &'static str,
    },
    /// The run directory cannot be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl RunError {
    /// The exit code: 2 for a scenario or usage error, 3 for an unreachable
    /// target, an interruption or I/O.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Scenario(_) => 2,
            _ => 3,
        }
    }
}

/// What a finished run produced.
#[derive(Debug)]
pub struct RunReport {
    /// The summary, as written to `summary.json`; `summary.aborted` says
    /// why the run stopped early or could not measure anything.
    pub summary: Summary,
    /// The run directory.
    pub run_dir: PathBuf,
}

impl RunReport {
    /// 0 when every threshold and check held, 1 when one failed, 3 when the
    /// run was stopped (a signal, `abort_on_fail`, the target gone) or no
    /// client could connect at all.
    pub fn exit_code(&self) -> u8 {
        match (&self.summary.aborted, self.summary.verdict) {
            (Some(_), _) => 3,
            (None, Verdict::Pass) => 0,
            (None, Verdict::Fail) => 1,
        }
    }
}

/// Runs a scenario.
///
/// Once the scenario has loaded, every way out leaves a `summary.json` in
/// the run directory: a finished run, a stopped one (a signal, no client able
/// to connect, `abort_on_fail`, the target gone) with the reason in
/// `aborted`, and an error (an unreachable target, say) with an empty
/// summary whose `aborted` is the error.
pub async fn run(options: RunOptions) -> Result<RunReport, RunError> {
    let scenario = Scenario::load_with_overrides(&options.scenario, &options.overrides)?;
    let run_dir = options
        .out
        .clone()
        .unwrap_or_else(|| default_run_dir(&scenario.name));
    std::fs::create_dir_all(&run_dir).map_err(|source| RunError::Io {
        path: run_dir.clone(),
        source,
    })?;
    let scenario_text = std::fs::read_to_string(&options.scenario).unwrap_or_default();
    write_file(
        &run_dir.join("scenario.yml"),
        &scenario_as_run(&scenario_text, &options.overrides),
    )?;
    let name = scenario.name.clone();
    let described = options
        .target
        .clone()
        .or_else(|| scenario.target.clone())
        .unwrap_or_else(|| "embedded reference gateway".to_owned());
    let started = Instant::now();
    let started_at = SystemTime::now();
    let mut signals = if options.handle_signals {
        Signals::listen()
    } else {
        Signals::none()
    };
    let result = run_in(scenario, &run_dir, &options, &mut signals).await;
    if let Err(err) = &result {
        // An error after the run directory exists still leaves a summary.
        let mut summary = Summary::from_registry(
            &Registry::new(),
            RunInfo {
                scenario: name,
                target: described,
                started_at,
                duration: started.elapsed(),
            },
        );
        summary.verdict = Verdict::Fail;
        summary.aborted = Some(err.to_string());
        let _ = summary.write(&run_dir.join("summary.json"));
    }
    result
}

/// The part of [`run`] after the run directory exists.
async fn run_in(
    scenario: Scenario,
    run_dir: &Path,
    options: &RunOptions,
    signals: &mut Signals,
) -> Result<RunReport, RunError> {
    let target = target::resolve(
        options.target.as_deref(),
        scenario.target.as_deref(),
        options.gateway_profile,
    )
    .await?;
    let tokens = match (&scenario.auth, &target) {
        (None, _) => Ok(None),
        (Some(auth), Target::Embedded { secret, .. }) if auth.jwt.is_some() => Ok(auth
            .jwt
            .as_ref()
            .map(|jwt| TokenSource::jwt(jwt, &scenario.vars, secret.as_bytes()))),
        (Some(auth), _) => TokenSource::new(auth, &scenario.vars).map(Some),
    };
    let tokens = match tokens {
        Ok(tokens) => tokens,
        Err(err) => {
            target.stop().await;
            return Err(err.into());
        }
    };
    let model_name =
        scenario
            .protocol
            .clone()
            .unwrap_or_else(|| match (&target, options.gateway_profile) {
                (Target::Embedded { .. }, Profile::Strict) => "strict".to_owned(),
                _ => "seed".to_owned(),
            });
    let model = match ProtocolModel::resolve(&model_name, &scenario.base_dir) {
        Ok(model) => model,
        Err(err) => {
            target.stop().await;
            return Err(err.into());
        }
    };
    if let Some(start) = options.start_at {
        if let Ok(wait) = start.duration_since(SystemTime::now()) {
            if !options.quiet {
                eprintln!("waiting {:.1} s for --start-at", wait.as_secs_f64());
            }
            let signal = tokio::select! {
                () = tokio::time::sleep(wait) => None,
                signal = signals.recv() => Some(signal),
            };
            if let Some(signal) = signal {
                target.stop().await;
                return Err(RunError::Interrupted { signal });
            }
        }
    }
    let result = play(
        scenario,
        (model, &model_name),
        &target,
        tokens,
        (run_dir, signals),
        options,
    )
    .await;
    target.stop().await;
    result
}

/// SIGINT and SIGTERM, listened to for the whole run so that either stops
/// it cleanly (partial results written, exit 3) instead of killing it.
struct Signals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Starts listening (a signal that cannot be listened to keeps its
    /// default action).
    fn listen() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Self {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }

    /// Not listening: [`Signals::recv`] never returns.
    fn none() -> Self {
        Self {
            interrupt: None,
            terminate: None,
        }
    }

    /// The name of the next signal received.
    async fn recv(&mut self) -> &'static str {
        async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(s) => {
                    if s.recv().await.is_none() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        }
        let Signals {
            interrupt,
            terminate,
        } = self;
        tokio::select! {
            () = next(interrupt) => "SIGINT",
            () = next(terminate) => "SIGTERM",
        }
    }
}

/// `reports/runs/<UTC timestamp>-<scenario>`.
fn default_run_dir(name: &str) -> PathBuf {
    let stamp = chorus_protocol::timestamp::format_iso(SystemTime::now())
        .replace([':', '.'], "")
        .trim_end_matches('Z')
        .to_owned();
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    PathBuf::from("reports/runs").join(format!("{stamp}-{safe}"))
}

fn scenario_as_run(text: &str, overrides: &[Override]) -> String {
    let mut out = String::from(text);
    for o in overrides {
        out.push_str(&format!("\n# --set {}={}", o.key, o.value));
    }
    out
}

fn write_file(path: &Path, text: &str) -> Result<(), RunError> {
    std::fs::write(path, text).map_err(|source| RunError::Io {
        path: path.to_owned(),
        source,
    })
}

/// How many clients the phases start at most (for the progress bar and source addresses).
fn planned_clients(scenario: &Scenario) -> u64 {
    let mut level = 0u64;
    let mut peak = 0u64;
    let mut arrivals = 0u64;
    for phase in &scenario.load.phases {
        match phase {
            Phase::Ramp { to, .. } => level = *to,
            Phase::Hold(_) => {}
            Phase::Arrive { max, .. } => {
                let n = phase.arrivals();
                arrivals = arrivals.saturating_add(
                    max.map_or(n, |m| n.min(m.max(1).saturating_mul(4)).max(m.min(n))),
                );
            }
        }
        peak = peak.max(level);
    }
    peak.saturating_add(arrivals)
}

async fn play(
    scenario: Scenario,
    (model, model_source): (ProtocolModel, &str),
    target: &Target,
    tokens: Option<TokenSource>,
    (run_dir, signals): (&Path, &mut Signals),
    options: &RunOptions,
) -> Result<RunReport, RunError> {
    let quiet = options.quiet;
    // Thousands of sockets need thousands of file descriptors.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let planned = planned_clients(&scenario).div_ceil(u64::from(options.shard.count));
    let registry = Registry::new();
    let mut client = ClientConfig::new(target.url());
    client.path = scenario.socketio.path.clone();
    client.namespace = scenario.socketio.namespace.clone();
    client.transport = scenario.socketio.transport;
    client.version = scenario.socketio.version;
    client.tls = scenario.tls_client.clone();
    let local_ips = target::source_addresses(target.url(), planned);
    let ctx = Arc::new(Context::new(
        scenario,
        model,
        client,
        tokens,
        local_ips,
        options.shard,
        &registry,
    ));
    let live = match options.metrics_addr {
        Some(addr) => Some(live::serve(addr, registry.clone()).await?),
        None => None,
    };
    let p99_of = format!(
        "delivery.{}",
        ctx.model
            .broadcasts
            .first()
            .map_or("", |b| b.event.as_str())
    );
    let connected_gauge = registry.gauge("clients.connected");
    let backlog_gauge = registry.gauge("driver.send_backlog");
    let mut liveness = liveness::Watch::default();
    let health = HealthSampler::spawn(&registry);
    let mut logs = IntervalLogs::create(run_dir, registry.started_at())?;
    let mut series = TimeSeries::new(registry.started_at());
    let mut progress = Progress::new(quiet, planned);
    let started = Instant::now();
    let cap = ctx
        .scenario
        .max_duration
        .unwrap_or(ctx.scenario.phases_duration() + DEFAULT_GRACE);

    let (phase_tx, phase_rx) = watch::channel(String::from("start"));
    let (end_tx, end_rx) = watch::channel(false);
    let mut driver = tokio::spawn(phases::drive(ctx.clone(), phase_tx, end_rx));
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let mut aborted: Option<String> = None;
    let mut last_probe: Option<Instant> = None;
    let stop = |why: String, aborted: &mut Option<String>| {
        if aborted.is_none() {
            *aborted = Some(why);
        }
        let _ = end_tx.send(true);
    };
    loop {
        tokio::select! {
            ended = &mut driver => {
                if let Err(err) = ended {
                    if err.is_panic() {
                        registry.recorder().add(ctx.ids.panics, 1);
                        aborted.get_or_insert_with(|| "the load driver panicked (see the log above)".to_owned());
                    }
                }
                break;
            }
            signal = signals.recv() => {
                if aborted.as_deref().is_some_and(|a| a.starts_with("interrupted")) {
                    // A second signal: stop draining, keep what was measured.
                    driver.abort();
                    let _ = (&mut driver).await;
                    break;
                }
                if !quiet {
                    eprintln!("{signal}: stopping the run (again to stop at once)");
                }
                aborted = None;
                stop(format!("interrupted by {signal}"), &mut aborted);
            }
            _ = tick.tick() => {
                let snapshot = registry.collect_interval(Instant::now());
                logs.write(&snapshot)?;
                series.push(&snapshot);
                let cumulative = registry.cumulative();
                let errors = cumulative
                    .counters
                    .iter()
                    .filter(|c| c.name.starts_with("errors") || c.name.starts_with("timeouts"))
                    .map(|c| c.total)
                    .sum();
                let connected = ctx.connected.load(Relaxed);
                registry.recorder().set_gauge(connected_gauge, connected as f64);
                registry.recorder().set_gauge(backlog_gauge, ctx.sending.load(Relaxed) as f64);
                progress.tick(&Tick {
                    phase: &phase_rx.borrow(),
                    connected,
                    planned,
                    snapshot: &snapshot,
                    errors,
                    p99_of: &p99_of,
                    connect_failures: (ctx.failures.total(), ctx.failures.top()),
                });
                liveness::watch_liveness(&ctx, &snapshot, &mut liveness);
                let over_time = started.elapsed() >= cap;
                let breach = if ctx.scenario.abort_on_fail {
                    breached(&mut summarize(&registry, &ctx.scenario, target, started), &ctx.scenario)
                } else {
                    None
                };
                // Every client planned so far tried and none could connect:
                // nothing is left to measure.
                let failed = ctx.failures.total();
                let nobody = failed > 0
                    && failed >= planned
                    && ctx.ever_connected.load(Relaxed) == 0;
                // Every session the run had is gone, lost to the target: if it
                // no longer accepts TCP, it died (probed at most every 5 s).
                let lost = lost_connections(cumulative.counters.iter().map(|c| (&*c.name, c.total)));
                let gone = if lost > 0
                    && ctx.ever_connected.load(Relaxed) > 0
                    && open_sessions(&ctx) == 0
                    && last_probe.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(5))
                    && !*end_tx.borrow()
                {
                    last_probe = Some(Instant::now());
                    target_gone(lost, target).await
                } else {
                    None
                };
                if !*end_tx.borrow() {
                    if let Some(why) = gone {
                        stop(why, &mut aborted);
                    } else if nobody {
                        stop(failure::no_client_line(&ctx.failures.reasons(), target.url(), &ctx.scenario), &mut aborted);
                    } else if let Some(expr) = breach {
                        stop(format!("threshold `{expr}` failed with abort_on_fail"), &mut aborted);
                    } else if over_time {
                        let _ = end_tx.send(true);
                    }
                }
            }
        }
    }
    progress.finish();
    health.stop().await;
    if let Some(live) = live {
        live.abort();
    }

    // Settle the ledger, then collect once more so its counters are in the summary.
    // A shard cannot: its receivers heard senders of other shards. It writes
    // its half of the ledger for `chorus merge` instead.
    let (receivers, senders) = ctx.roster.take_ledger();
    if ctx.shard.count > 1 {
        let ledger = LedgerFile {
            protocol: model_source.to_owned(),
            shard: ctx.shard.to_string(),
            receivers,
            senders,
        };
        ledger.write(run_dir)?;
    } else {
        let settlement = settle(&receivers, &senders, Window::RUN);
        let rec = registry.recorder();
        for (name, n) in settlement::counters(&settlement) {
            rec.add(registry.counter(&name), n);
        }
        for (n, evidence) in
            settlement::evidence(&settlement, &ctx.model, started.elapsed().as_secs_f64())
        {
            ctx.violations.report(n, evidence);
        }
    }
    ctx.violations
        .write(run_dir)
        .map_err(|source| RunError::Io {
            path: run_dir.join("violations.json"),
            source,
        })?;
    let snapshot = registry.collect_interval(Instant::now());
    logs.write(&snapshot)?;
    series.push(&snapshot);
    series.write(run_dir)?;

    let mut summary = summarize(&registry, &ctx.scenario, target, started);
    evaluate(&mut summary, &ctx.scenario);
    if aborted.is_none() && ctx.ever_connected.load(Relaxed) == 0 && ctx.failures.total() > 0 {
        aborted = Some(failure::no_client_line(
            &ctx.failures.reasons(),
            target.url(),
            &ctx.scenario,
        ));
    }
    if aborted.is_none() {
        let counters = summary.counters.iter().map(|(k, v)| (k.as_str(), *v));
        aborted = target_gone(lost_connections(counters), target).await;
    }
    if aborted.is_some() {
        summary.verdict = Verdict::Fail;
    }
    summary.aborted = aborted;
    summary.write(&run_dir.join("summary.json"))?;
    if !quiet {
        // The summary is the result: stdout, as k6 does; progress and logs go to stderr.
        println!("{}", render_table(&summary));
        eprintln!("run directory: {}", run_dir.display());
    }
    Ok(RunReport {
        summary,
        run_dir: run_dir.to_owned(),
    })
}

/// Client sessions open right now (connected and not closed by the server).
fn open_sessions(ctx: &Context) -> usize {
    let inboxes = ctx.inboxes.lock().unwrap_or_else(|e| e.into_inner());
    inboxes
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .filter(|i| !i.closed.load(Relaxed))
        .count()
}

/// Connections the target ended without a goodbye (closed, reset, ping
/// timeout) plus connects it refused at the TCP level, from counter totals.
fn lost_connections<'a>(counters: impl Iterator<Item = (&'a str, u64)>) -> u64 {
    counters
        .filter(|(name, _)| {
            name.starts_with("disconnects.")
                && !matches!(*name, "disconnects.client" | "disconnects.server_namespace")
                || name.starts_with("errors.connect.tcp")
        })
        .map(|(_, n)| n)
        .sum()
}

/// When `lost` connections were lost to a remote target that no longer
/// accepts TCP, the line that says the target went away mid-run.
async fn target_gone(lost: u64, target: &Target) -> Option<String> {
    let Target::Remote(url) = target else {
        return None;
    };
    if lost == 0 {
        return None;
    }
    match target::check_reachable(url).await {
        Ok(()) => None,
        Err(err) => Some(format!(
            "the target went away during the run ({lost} connections lost or refused): {err}"
        )),
    }
}

fn summarize(
    registry: &Registry,
    scenario: &Scenario,
    target: &Target,
    started: Instant,
) -> Summary {
    Summary::from_registry(
        registry,
        RunInfo {
            scenario: scenario.name.clone(),
            target: target.describe(),
            started_at: registry.started_at(),
            duration: started.elapsed(),
        },
    )
}

/// Evaluates the scenario's thresholds and the built-in checks: no
/// delivery rule was violated, every client that was meant to connect did
/// (`errors.connect`: failed connects of any reason, CONNECT_ERROR refusals
/// included), every send reached the socket (`errors.emit`: a gateway that
/// stops reading or drops connections under its clients has not held), and
/// no virtual user panicked (`errors.panic`). Returns whether all held.
pub(crate) fn evaluate(summary: &mut Summary, scenario: &Scenario) -> bool {
    let mut pass = true;
    for t in &scenario.thresholds {
        let stat = t.stat.map(|s| s.to_string());
        pass &= summary.evaluate(t.to_string(), &t.metric, stat.as_deref(), |v| t.check(v));
    }
    for (expr, metric) in [
        ("violations == 0 (built-in check)", "violations"),
        ("errors.connect == 0 (built-in check)", "errors.connect"),
        ("errors.emit == 0 (built-in check)", "errors.emit"),
        ("errors.panic == 0 (built-in check)", failure::PANIC_COUNTER),
    ] {
        pass &= summary.evaluate(expr, metric, None, |v| v == 0.0);
    }
    pass
}

/// The live check of `abort_on_fail`: the first threshold or check that
/// failed on a value. A threshold without data yet is not a breach (early
/// in a run most latencies have no sample); it fails at the end if it
/// still has none.
fn breached(summary: &mut Summary, scenario: &Scenario) -> Option<String> {
    evaluate(summary, scenario);
    summary
        .thresholds
        .iter()
        .find(|t| !t.pass && !t.no_data)
        .map(|t| t.expr.clone())
}
