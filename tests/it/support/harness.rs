//! Shared by the tests that drive the `chorus` binary end to end: a seed
//! gateway on a loopback port, fresh run directories, and `chorus` child
//! processes bounded in time.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chorus::metrics::Summary;
use chorus_gateway::{Faults, Profile, RunningGateway};

/// No `chorus` child process of these tests may take longer than this.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);

/// Held by the tests that must not overlap: those that measure this process
/// (its resident memory, latencies whose accuracy they assert) and the
/// in-process runs that load it heavily. All tests share one process, so one
/// lock for all of them.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A path relative to the crate root.
pub fn crate_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A fresh, empty directory for one test's run directories (a new one on
/// every call: the tests share one process).
pub fn temp_dir(tag: &str) -> PathBuf {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("chorus-{tag}-{}-{call}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the temp dir");
    dir
}

/// A seed gateway on 127.0.0.1 port 0 injecting `faults`, signing tokens with `secret`.
pub async fn start_gateway(faults: Faults, secret: &str) -> RunningGateway {
    start_gateway_in(Profile::Seed, faults, secret).await
}

/// A gateway in `profile` on 127.0.0.1 port 0 injecting `faults`, signing tokens with `secret`.
pub async fn start_gateway_in(profile: Profile, faults: Faults, secret: &str) -> RunningGateway {
    let config = chorus_test_support::gateway::config(profile, secret);
    chorus_test_support::within(chorus_gateway::faults::start(config, faults))
        .await
        .expect("the gateway starts")
}

/// Quiet in-process run options for a scenario file (relative to the crate
/// root) against `target`, with `--set` style `overrides`, into `out`.
pub fn run_options(
    scenario: &str,
    target: Option<String>,
    out: PathBuf,
    overrides: &[&str],
) -> chorus::run::RunOptions {
    chorus::run::RunOptions {
        target,
        out: Some(out),
        overrides: overrides
            .iter()
            .map(|o| chorus::scenario::Override::parse(o).expect("a valid override"))
            .collect(),
        quiet: true,
        gateway_profile: Profile::Seed,
        ..chorus::run::RunOptions::new(crate_path(scenario))
    }
}

/// `chorus run` arguments for a scenario (relative to the crate root)
/// against `target` into `out`, quiet and without reports.
pub fn run_args(scenario: &str, target: &str, out: &Path) -> Vec<String> {
    let scenario = crate_path(scenario);
    [
        "run",
        &scenario.display().to_string(),
        "--target",
        target,
        "--out",
        &out.display().to_string(),
        "--quiet",
        "--no-report",
    ]
    .map(String::from)
    .to_vec()
}

/// The gateway's base URL.
pub fn url_of(gateway: &RunningGateway) -> String {
    format!("http://{}", gateway.addr())
}

/// A `chorus` command with `args`, the environment variable `secret_env`
/// set to `secret`, killed if the test drops it.
pub fn chorus<I, S>(args: I, (secret_env, secret): (&str, &str)) -> tokio::process::Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus"));
    command
        .args(args)
        .env(secret_env, secret)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .kill_on_drop(true);
    command
}

/// Runs `command` to the end (at most [`CHILD_DEADLINE`]) and returns what it printed.
pub async fn finish(mut command: tokio::process::Command) -> Output {
    tokio::time::timeout(CHILD_DEADLINE, command.output())
        .await
        .expect("chorus ends in time")
        .expect("chorus starts")
}

/// Panics with the child's output unless it exited with `code`.
pub fn assert_exit(output: &Output, code: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: stdout\n{}\nstderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `summary.json` of a run directory.
pub fn read_summary(run_dir: &Path) -> Summary {
    Summary::read(&run_dir.join("summary.json")).expect("summary.json reads")
}

/// A counter of a summary, which must be there.
pub fn counter(summary: &Summary, name: &str) -> u64 {
    *summary
        .counters
        .get(name)
        .unwrap_or_else(|| panic!("no counter {name}: {:?}", summary.counters))
}

/// The sample count of latency `name` in `summary`, failing the test if it is absent.
pub fn latency_count(summary: &Summary, name: &str) -> u64 {
    summary
        .latency
        .get(name)
        .unwrap_or_else(|| panic!("no latency {name}: {:?}", summary.latency.keys()))
        .count
}
