//! `chorus run`: plays a scenario against a gateway, measures every delivery,
//! and writes the run directory.
//!
//! The flow of a run: resolve the target (or start the reference gateway
//! in-process), compile the scenario against its protocol model into a
//! `RunPlan`, start virtual users as the load phases say, collect
//! metrics once a second (interval logs, time series, progress, early abort),
//! and at the end stop the senders, let in-flight deliveries drain, disconnect
//! everyone, settle the delivery ledger (as a merge of one shard would) and
//! write `summary.json`.
//!
//! Layers, each calling only those below it:
//!
//! - `phases` starts virtual users (`vu`), which play the plan's flows and
//!   hand each client a `receiver`, the checker of everything it receives;
//! - `receiver` uses `checks` (payload schemas, snapshots), `timing`
//!   (latency recording), `closes` (close-reason counters) and `correlate`
//!   (the marks in message texts);
//! - `context` is the plan plus the run's shared state: the `roster` the
//!   `ledger` is settled from, `violations`, the clients' `inbox`es;
//! - `plan` (the compiled run), `inbox`, `ledger`, `clock` (the one time type,
//!   `WallTime`) and `error` are at the bottom. `merge` and this module
//!   settle through `settlement` and judge through `verdict`.

mod checks;
mod clock;
mod closes;
mod context;
mod correlate;
mod error;
mod failure;
mod fasthash;
mod inbox;
mod ledger;
mod live;
mod liveness;
mod merge;
mod nodes;
mod phases;
mod plan;
mod progress;
mod receiver;
mod rooms;
mod roster;
mod settlement;
mod shard;
mod snapshots;
mod target;
mod timing;
mod verdict;
mod violations;
mod vu;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chorus_gateway::Profile;
use tokio::sync::watch;

use crate::client::ClientConfig;
use crate::error::FileError;
use crate::metrics::{
    HealthSampler, IntervalLogs, Registry, RunInfo, Summary, TimeSeries, Verdict,
};
use crate::report::render_table;
use crate::rules::ProtocolModel;
use crate::scenario::{Override, Phase, Scenario, TokenSource};

pub use clock::WallTime;
pub use error::RunError;
pub use ledger::RoomWindow;
pub use ledger::{
    settle, Finding, LedgerFile, LedgerTotals, ReceiverRecord, SenderFacts, SeqRuns, Settlement,
    Window,
};
pub use merge::merge;
pub use shard::{parse_start_at, Shard};
pub use violations::Kind as ViolationKind;

use context::Context;
use plan::{RunPlan, Setup};
use progress::{Progress, Tick};
use settlement::settle_ledgers;
use target::Target;
use verdict::{breached, evaluate};

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
    std::fs::create_dir_all(&run_dir).map_err(|source| FileError::new(&run_dir, source))?;
    let scenario_text = std::fs::read_to_string(&options.scenario).unwrap_or_default();
    write_file(
        &run_dir.join("scenario.yml"),
        &scenario_as_run(&scenario_text, &options.overrides),
    )?;
    let name = scenario.name.clone();
    let described = options
        .target
        .clone()
        .or_else(|| (!scenario.target.is_empty()).then(|| scenario.target.join(", ")))
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
        &scenario.target,
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
    let model = match ProtocolModel::resolve(&model_name, &scenario.base_dir)
        .and_then(|model| plan::check_rooms(&scenario, &model, &model_name).map(|()| model))
    {
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
    std::fs::write(path, text).map_err(|source| FileError::new(path, source).into())
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
    let nodes = nodes::Nodes::new(target.urls().to_vec(), scenario.weights.as_deref());
    let setup = Setup {
        client,
        tokens,
        local_ips,
        shard: options.shard,
        nodes,
    };
    let ctx = Arc::new(Context::new(
        RunPlan::new(scenario, model, setup, &registry),
        &registry,
    ));
    let live = match options.metrics_addr {
        Some(addr) => Some(live::serve(addr, registry.clone()).await?),
        None => None,
    };
    let p99_of = format!(
        "delivery.{}",
        ctx.plan
            .model
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
        .plan
        .scenario
        .max_duration
        .unwrap_or(ctx.plan.scenario.phases_duration() + DEFAULT_GRACE);

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
                        registry.recorder().add(ctx.plan.ids.panics, 1);
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
                let connected = ctx.clients.now_connected();
                registry.recorder().set_gauge(connected_gauge, connected as f64);
                registry.recorder().set_gauge(backlog_gauge, ctx.clients.sending() as f64);
                progress.tick(&Tick {
                    phase: &phase_rx.borrow(),
                    connected,
                    planned,
                    snapshot: &snapshot,
                    errors,
                    p99_of: &p99_of,
                    connect_failures: (ctx.clients.failures.total(), ctx.clients.failures.top()),
                });
                liveness::watch_liveness(&ctx, &snapshot, &mut liveness);
                let over_time = started.elapsed() >= cap;
                let breach = if ctx.plan.scenario.abort_on_fail {
                    breached(&mut summarize(&registry, &ctx.plan.scenario, target, started), &ctx.plan.scenario)
                } else {
                    None
                };
                // Every client planned so far tried and none could connect:
                // nothing is left to measure.
                let failed = ctx.clients.failures.total();
                let nobody = failed > 0
                    && failed >= planned
                    && ctx.clients.ever_connected() == 0;
                // Every session the run had is gone, lost to the target: if it
                // no longer accepts TCP, it died (probed at most every 5 s).
                let lost = lost_connections(cumulative.counters.iter().map(|c| (&*c.name, c.total)));
                let gone = if lost > 0
                    && ctx.clients.ever_connected() > 0
                    && ctx.clients.open_sessions() == 0
                    && ctx.clients.now_reconnecting() == 0
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
                        stop(failure::no_client_line(&ctx.clients.failures.reasons(), &target.urls().join(", "), &ctx.plan.scenario), &mut aborted);
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
    // its half of the ledger for `chorus merge` instead. A whole run is
    // settled as a merge of its one shard.
    let (receivers, senders) = ctx.roster.take_ledger();
    let ledger = LedgerFile {
        protocol: model_source.to_owned(),
        shard: ctx.plan.shard.to_string(),
        receivers,
        senders,
        snapshots: ctx.roster.take_snapshots(),
        room_snapshots: ctx.roster.take_room_snapshots(),
    };
    if ctx.plan.shard.count > 1 {
        ledger.write(run_dir)?;
    } else {
        let t_s = started.elapsed().as_secs_f64();
        let settled = settle_ledgers(&[&ledger], &ctx.plan.model, t_s);
        let rec = registry.recorder();
        for (name, n) in settled.counters {
            rec.add(registry.counter(&name), n);
        }
        for (n, evidence) in settled.violations {
            ctx.violations.report(n, evidence);
        }
    }
    ctx.violations
        .write(run_dir)
        .map_err(|source| FileError::new(run_dir.join("violations.json"), source))?;
    let snapshot = registry.collect_interval(Instant::now());
    logs.write(&snapshot)?;
    series.push(&snapshot);
    series.write(run_dir)?;

    let mut summary = summarize(&registry, &ctx.plan.scenario, target, started);
    evaluate(&mut summary, &ctx.plan.scenario);
    if aborted.is_none() && ctx.clients.ever_connected() == 0 && ctx.clients.failures.total() > 0 {
        aborted = Some(failure::no_client_line(
            &ctx.clients.failures.reasons(),
            &target.urls().join(", "),
            &ctx.plan.scenario,
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
    let Target::Remote(urls) = target else {
        return None;
    };
    if lost == 0 {
        return None;
    }
    for url in urls {
        if let Err(err) = target::check_reachable(url).await {
            return Some(format!(
                "the target went away during the run ({lost} connections lost or refused): {err}"
            ));
        }
    }
    None
}

fn summarize(
    registry: &Registry,
    scenario: &Scenario,
    target: &Target,
    started: Instant,
) -> Summary {
    let mut summary = Summary::from_registry(
        registry,
        RunInfo {
            scenario: scenario.name.clone(),
            target: target.describe(),
            started_at: registry.started_at(),
            duration: started.elapsed(),
        },
    );
    summary.name_nodes(target.urls());
    summary
}
