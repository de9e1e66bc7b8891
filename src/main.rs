//! The `chorus` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Load and conformance testing for Socket.IO chat gateways.
#[derive(Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Play a YAML scenario against a gateway (without a target: against the
    /// reference gateway started in-process) and write a run directory.
    ///
    /// Exit codes: 0 every threshold and check held; 1 one failed (a
    /// threshold, a delivery rule, a client that could not connect, a
    /// panicked virtual user); 2 scenario or usage error; 3 the run could not
    /// be carried out or was stopped: target unreachable, no client could
    /// connect at all, SIGINT/SIGTERM, `abort_on_fail`, the target went away.
    /// The summary table and verdict go to stdout; progress and logs to
    /// stderr; summary.json is written on every exit but a scenario error.
    Run {
        /// The scenario file, e.g. scenarios/smoke.yml.
        scenario: PathBuf,
        /// The gateway's base URL, e.g. http://127.0.0.1:3000 (overrides the
        /// scenario's `target`); repeat it for several nodes, over which the
        /// clients are spread.
        #[arg(long)]
        target: Vec<String>,
        /// The run directory (default reports/runs/<timestamp>-<scenario>/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override a scenario value by its dotted path, e.g. `--set load.phases.0.ramp.to=50`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<chorus::scenario::Override>,
        /// No progress display and no summary table.
        #[arg(long)]
        quiet: bool,
        /// Do not write report.html and summary.md at the end.
        #[arg(long)]
        no_report: bool,
        /// Profile of the embedded gateway used when no target is given.
        #[arg(long, value_enum, default_value = "strict")]
        gateway_profile: chorus_gateway::Profile,
        /// Play part I of N of the clients (a distributed run; combine with `chorus merge`).
        #[arg(long, value_name = "I/N", conflicts_with = "shards")]
        shard: Option<chorus::run::Shard>,
        /// Like `--shard`, with I read from JOB_COMPLETION_INDEX (a Kubernetes Indexed Job).
        #[arg(long, value_name = "N")]
        shards: Option<u32>,
        /// Start at this UTC instant (`2026-11-26T05:00:00Z` or `@<unix seconds>`), so shards start together.
        #[arg(long, value_parser = chorus::run::parse_start_at)]
        start_at: Option<std::time::SystemTime>,
        /// Serve the run's live metrics in the Prometheus format at http://ADDR/metrics.
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Run the conformance suite against a gateway (without a target: against
    /// the reference gateway started in-process in the chosen profile).
    ///
    /// Exit codes: 0 every case passed; 1 one failed; 2 bad case file or
    /// usage; 3 target unreachable.
    Conform {
        /// The gateway's base URL, e.g. http://127.0.0.1:3000; repeat it for
        /// the nodes of one cluster (the `cluster` cases run only then).
        #[arg(long)]
        target: Vec<String>,
        /// The protocol profile to check (and the embedded gateway's profile).
        #[arg(long, value_enum, default_value = "strict")]
        profile: chorus_gateway::Profile,
        /// Also write the results as JUnit XML to this file.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Only the cases whose name matches this glob, e.g. `seed.auth.*`.
        #[arg(long, value_name = "PATTERN")]
        only: Option<String>,
        /// Write conformance.json into this directory.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// With --target: the environment variable holding the JWT secret.
        #[arg(long, value_name = "NAME", default_value = "JWT_SECRET")]
        jwt_secret_env: String,
        /// Read the case files from this directory instead of the built-in ones.
        #[arg(long, value_name = "DIR")]
        cases: Option<PathBuf>,
        /// The socket.io version the target runs: 4 (also for 3) or 2 (socket.io
        /// 2.x, Engine.IO v3; needs --target).
        #[arg(long, value_name = "2|4", default_value = "4", value_parser = socketio_version)]
        socketio_version: chorus_protocol::Version,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Combine the run directories of the shards of one distributed run into
    /// one: histograms merged losslessly, counters summed, the delivery ledger
    /// settled across shards. Exit codes as for `run`.
    Merge {
        /// The shards' run directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// The merged run directory.
        #[arg(long)]
        out: PathBuf,
        /// Do not write report.html and summary.md.
        #[arg(long)]
        no_report: bool,
    },
    /// Run the reference chat gateway (the same server and flags as `chorus-gateway`).
    Serve {
        // Boxed: the gateway's configuration is much larger than the other commands.
        #[command(flatten)]
        config: Box<chorus_gateway::GatewayConfig>,
    },
    /// Write report.html, summary.md (and junit.xml with conformance results) into a run directory.
    Report {
        /// The run directory (holding summary.json, timeseries.json, hdr/).
        run_dir: PathBuf,
    },
    /// Compare a run against a baseline; exit 1 on regression, 2 on bad input.
    Compare {
        /// Baseline summary.json, or a run directory holding one.
        baseline: PathBuf,
        /// Current summary.json, or a run directory holding one.
        current: PathBuf,
        /// Override a metric's tolerance, e.g. `delivery.*.p99=10%:1ms` or `connect.max=off`.
        #[arg(long = "tolerance", value_name = "PATTERN=REL%:ABS")]
        tolerances: Vec<String>,
        /// Also write the comparison as Markdown to this file.
        #[arg(long, value_name = "FILE")]
        markdown: Option<PathBuf>,
    },
}

/// Why a command could not do its job; [`exit_code`] gives its exit status.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// `chorus run` or `chorus merge`.
    #[error(transparent)]
    Run(#[from] chorus::run::RunError),
    /// `chorus conform`.
    #[error(transparent)]
    Conform(#[from] chorus::conform::ConformError),
    /// `chorus report`, or a bad `--tolerance`.
    #[error(transparent)]
    Report(#[from] chorus::report::ReportError),
    /// A `summary.json` that `chorus compare` cannot read.
    #[error(transparent)]
    Metrics(#[from] chorus::metrics::MetricsError),
    /// A file that cannot be written (`compare --markdown`).
    #[error(transparent)]
    File(#[from] chorus::error::FileError),
    /// `chorus serve`.
    #[error(transparent)]
    Gateway(#[from] chorus_gateway::GatewayError),
    /// A bad command-line value.
    #[error("{0}")]
    Usage(String),
}

/// The exit code of a failure (the README's "Exit codes"): `run`, `merge` and
/// `conform` tell theirs apart; everything else is bad input or usage, 2.
fn exit_code(failure: &Failure) -> u8 {
    match failure {
        Failure::Run(err) => err.exit_code(),
        Failure::Conform(err) => err.exit_code(),
        Failure::Report(_)
        | Failure::Metrics(_)
        | Failure::File(_)
        | Failure::Gateway(_)
        | Failure::Usage(_) => 2,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match dispatch(Cli::parse().command).await {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("chorus: {failure}");
            ExitCode::from(exit_code(&failure))
        }
    }
}

/// TLS for `https://`/`wss://` targets, on `run` and `conform`.
#[derive(clap::Args)]
struct TlsArgs {
    /// PEM file of the CA certificates to trust instead of the system's roots
    /// (for `run`: the scenario's `tls.ca`).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Accept any server certificate (a test gateway's self-signed one); for
    /// `run`: the scenario's `tls.insecure`.
    #[arg(long)]
    insecure: bool,
}

impl TlsArgs {
    /// The flags as scenario overrides (`tls.ca`, `tls.insecure`), so that the
    /// scenario loader reads and checks the files like the scenario's own.
    fn overrides(&self) -> Vec<chorus::scenario::Override> {
        let mut out = Vec::new();
        if let Some(ca) = &self.ca {
            // Relative to where chorus runs, not to the scenario; quoted as YAML.
            let path = std::path::absolute(ca).unwrap_or_else(|_| ca.clone());
            out.push(chorus::scenario::Override {
                key: "tls.ca".into(),
                value: serde_json::Value::from(path.display().to_string()).to_string(),
                flag: Some("--ca"),
            });
        }
        if self.insecure {
            out.push(chorus::scenario::Override {
                key: "tls.insecure".into(),
                value: "true".into(),
                flag: Some("--insecure"),
            });
        }
        out
    }
}

/// Runs one command; its exit code, or why it could not run.
async fn dispatch(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Run {
            scenario,
            target,
            out,
            overrides,
            quiet,
            no_report,
            gateway_profile,
            shard,
            shards,
            start_at,
            metrics_addr,
            tls,
        } => {
            let mut overrides = overrides;
            overrides.extend(tls.overrides());
            // Several nodes replace the scenario's `target` list, validated with it.
            let target = match <[String; 1]>::try_from(target) {
                Ok([one]) => Some(one),
                Err(list) if list.is_empty() => None,
                Err(list) => {
                    let quoted: Vec<String> = list
                        .iter()
                        .map(|url| serde_json::Value::from(url.as_str()).to_string())
                        .collect();
                    overrides.push(chorus::scenario::Override {
                        key: "target".into(),
                        value: format!("[{}]", quoted.join(", ")),
                        flag: Some("--target"),
                    });
                    None
                }
            };
            let shard = match (shard, shards) {
                (Some(shard), _) => shard,
                (None, Some(count)) => {
                    chorus::run::Shard::from_job_index(count).map_err(Failure::Usage)?
                }
                (None, None) => chorus::run::Shard::WHOLE,
            };
            let options = chorus::run::RunOptions {
                scenario,
                target,
                out,
                overrides,
                quiet,
                gateway_profile,
                shard,
                start_at,
                metrics_addr,
                handle_signals: true,
            };
            run(options, no_report).await
        }
        Command::Merge {
            dirs,
            out,
            no_report,
        } => merge(&dirs, &out, no_report),
        Command::Conform {
            target,
            profile,
            junit,
            only,
            out,
            jwt_secret_env,
            cases,
            socketio_version,
            tls,
        } => {
            let options = chorus::conform::ConformOptions {
                targets: target,
                profile,
                only,
                junit,
                out,
                jwt_secret_env,
                cases_dir: cases,
                version: socketio_version,
                tls: chorus::client::TlsConfig {
                    ca: tls.ca,
                    insecure: tls.insecure,
                    ..Default::default()
                },
            };
            conform(&options).await
        }
        Command::Report { run_dir } => report(&run_dir),
        Command::Compare {
            baseline,
            current,
            tolerances,
            markdown,
        } => compare(&baseline, &current, &tolerances, markdown.as_deref()),
        Command::Serve { config } => {
            chorus_gateway::init_logging(&config.log_level);
            chorus_gateway::serve_until_signal(*config).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `chorus run`: plays the scenario, then renders the reports unless told not to.
async fn run(options: chorus::run::RunOptions, no_report: bool) -> Result<ExitCode, Failure> {
    let quiet = options.quiet;
    let report = chorus::run::run(options).await?;
    if !no_report {
        if quiet {
            if let Err(err) = chorus::report::render_run_dir(&report.run_dir) {
                eprintln!("chorus: cannot render the report: {err}");
            }
        } else {
            report_quietly(&report.run_dir);
        }
    }
    if let Some(why) = &report.summary.aborted {
        eprintln!("chorus: {why}");
    }
    if !quiet {
        println!("verdict: {:?}", report.summary.verdict);
    }
    Ok(ExitCode::from(report.exit_code()))
}

/// `chorus conform`: one line per case, evidence under each failure, then the totals.
async fn conform(options: &chorus::conform::ConformOptions) -> Result<ExitCode, Failure> {
    let report = chorus::conform::run(options, |result| println!("{}", result.render())).await?;
    println!("{}", report.summary_line());
    Ok(ExitCode::from(report.exit_code()))
}

/// `chorus merge`: merges shard run directories, then renders the reports.
fn merge(dirs: &[PathBuf], out: &Path, no_report: bool) -> Result<ExitCode, Failure> {
    // A merged run directory is a run's: its verdict maps to the same exit code.
    let merged = chorus::run::RunReport {
        summary: chorus::run::merge(dirs, out)?,
        run_dir: out.to_owned(),
    };
    let summary = &merged.summary;
    println!("{}", chorus::report::render_table(summary));
    if !no_report {
        report_quietly(out);
    }
    eprintln!("merged into {}", out.display());
    if let Some(why) = &summary.aborted {
        eprintln!("chorus: {why}");
    }
    println!("verdict: {:?}", summary.verdict);
    Ok(ExitCode::from(merged.exit_code()))
}

/// Renders a run directory's reports, saying where they went (or why not).
fn report_quietly(run_dir: &Path) {
    match chorus::report::render_run_dir(run_dir) {
        Ok(files) => {
            for path in files.paths() {
                eprintln!("wrote {}", path.display());
            }
        }
        Err(err) => eprintln!("chorus: cannot render the report: {err}"),
    }
}

/// `chorus report`: renders the run directory's reports and prints their paths.
fn report(run_dir: &Path) -> Result<ExitCode, Failure> {
    let files = chorus::report::render_run_dir(run_dir)?;
    for path in files.paths() {
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `chorus compare`: reads both summaries, prints the comparison table and
/// writes the Markdown file if asked; 1 on regression.
fn compare(
    baseline: &Path,
    current: &Path,
    tolerances: &[String],
    markdown: Option<&Path>,
) -> Result<ExitCode, Failure> {
    let tolerances = chorus::report::Tolerances::parse(tolerances.iter().map(String::as_str))?;
    let baseline = chorus::metrics::Summary::read(baseline)?;
    let current = chorus::metrics::Summary::read(current)?;
    let comparison = chorus::report::compare(&baseline, &current, &tolerances);
    if let Some(path) = markdown {
        std::fs::write(path, comparison.render_markdown())
            .map_err(|e| chorus::error::FileError::new(path, e))?;
    }
    print!("{}", comparison.render_text());
    Ok(if comparison.regressed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `--socketio-version`: 2 or 4.
fn socketio_version(text: &str) -> Result<chorus_protocol::Version, String> {
    text.parse()
        .ok()
        .and_then(chorus_protocol::Version::from_major)
        .ok_or_else(|| format!("{text:?}: expected 2 (socket.io 2.x) or 4 (socket.io 3 and 4)"))
}
