//! `chorus conform`: the conformance suite for Socket.IO chat gateways.
//!
//! Cases are data: YAML files under `scenarios/conformance/` (compiled in, or
//! read from `--cases DIR`), each a list of steps played by a generic runner
//! with real clients; the few that need raw Engine.IO exchanges are written in
//! Rust ([`BuiltinCase`]). Every case names the docs/protocol.md statement it checks,
//! the profiles it applies to and its [`Category`]. Results print one line per
//! case, with an `expected:` / `got:` evidence block for each failure, and can
//! be written as `conformance.json` and JUnit XML.

mod builtin;
mod case;
mod error;
mod http;
mod matcher;
mod runner;
mod tokens;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

pub use builtin::BuiltinCase;
pub use case::{
    glob_match, load_builtin_files, load_dir, parse_cases, CaseSpec, Category, LoadedCase,
    ProfileName, MAX_NODES,
};
pub use error::ConformError;
pub use http::Peer;
pub use tokens::{TokenKind, TokenMint};

use crate::client::{Tls, TlsConfig};
use crate::error::FileError;
use crate::report::{render_junit, CaseStatus, Conformance, ConformanceCase};
use crate::scenario::Location;
use chorus_protocol::Version;

/// How many cases run at once.
const BATCH: usize = 8;
/// The bound on one whole case.
const CASE_LIMIT: Duration = Duration::from_secs(30);
/// The heartbeat of the second embedded gateway that the heartbeat cases use,
/// so that they finish in about a second.
const FAST_PING_MS: u64 = 400;

/// What `chorus conform` was asked to do.
#[derive(Debug, Clone)]
pub struct ConformOptions {
    /// The gateways' base URLs (`http://host:port`), the nodes of one
    /// cluster when several (`cluster` cases run only then); none starts the
    /// embedded gateway.
    pub targets: Vec<String>,
    /// The profile tested (and the embedded gateway's profile).
    pub profile: chorus_gateway::Profile,
    /// Only the cases whose name matches this glob.
    pub only: Option<String>,
    /// Write JUnit XML here.
    pub junit: Option<PathBuf>,
    /// Write `conformance.json` into this directory.
    pub out: Option<PathBuf>,
    /// With a target: the environment variable holding the JWT secret.
    pub jwt_secret_env: String,
    /// Read the case files from this directory instead of the compiled-in ones.
    pub cases_dir: Option<PathBuf>,
    /// TLS for an `https://`/`wss://` target (`--ca`, `--insecure`).
    pub tls: TlsConfig,
    /// The socket.io version the target speaks (`--socketio-version`); 2 needs
    /// a target, since the reference gateway speaks socket.io 4.
    pub version: Version,
}

impl ConformOptions {
    /// All cases of `profile` against `target` (or the embedded gateway), the
    /// secret in `JWT_SECRET`, plaintext, socket.io 4, nothing written: the
    /// command line's defaults, for the fields a caller does not set.
    pub fn new(target: Option<String>, profile: chorus_gateway::Profile) -> Self {
        Self {
            targets: target.into_iter().collect(),
            profile,
            only: None,
            junit: None,
            out: None,
            jwt_secret_env: "JWT_SECRET".to_owned(),
            cases_dir: None,
            tls: TlsConfig::default(),
            version: Version::default(),
        }
    }
}

/// What a case produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The gateway behaved as the statement requires.
    Pass,
    /// It did not; the evidence (`expected: …` / `got: …`).
    Fail(String),
    /// The case could not run against this target; why.
    Skip(String),
}

/// A case ready to run: its metadata and its body.
#[derive(Debug, Clone)]
pub struct Case {
    /// The dotted name.
    pub name: String,
    /// The profiles it applies to.
    pub profiles: Vec<ProfileName>,
    /// Its category.
    pub category: Category,
    /// The docs/protocol.md statement it checks.
    pub statement: String,
    /// The highest node its clients name (when not 0), and where.
    highest_node: Option<(u32, Location)>,
    body: CaseBody,
}

#[derive(Debug, Clone)]
enum CaseBody {
    Steps(Box<CaseSpec>),
    Builtin(BuiltinCase),
}

impl Case {
    /// Whether the case applies to `profile`.
    pub fn applies_to(&self, profile: ProfileName) -> bool {
        self.profiles.contains(&profile)
    }
}

/// The cases for a target of `version`: [`all_cases`], and for socket.io
/// 2.x the Engine.IO v3 built-in cases after them.
pub fn cases_for(version: Version, files: Vec<LoadedCase>) -> Vec<Case> {
    let mut cases = all_cases(files);
    if version == Version::V2 {
        cases.extend(BuiltinCase::V3.into_iter().map(builtin_case));
    }
    cases
}

fn builtin_case(b: BuiltinCase) -> Case {
    Case {
        name: b.name().to_owned(),
        profiles: b.profiles().to_vec(),
        category: b.category(),
        statement: b.statement().to_owned(),
        highest_node: None,
        body: CaseBody::Builtin(b),
    }
}

/// Every case: the loaded case files, then the built-in cases.
pub fn all_cases(files: Vec<LoadedCase>) -> Vec<Case> {
    let data = files.into_iter().map(|c| Case {
        name: c.spec.name.clone(),
        profiles: c.spec.profiles.clone(),
        category: c.spec.category,
        statement: c.spec.statement.clone(),
        highest_node: case::highest_node(&c.spec).map(|(node, at)| {
            let at = Location {
                origin: c.origin.origin.clone(),
                line: u32::try_from(at.line()).unwrap_or(u32::MAX),
                column: u32::try_from(at.column()).unwrap_or(u32::MAX),
            };
            (node, at)
        }),
        body: CaseBody::Steps(Box::new(c.spec)),
    });
    let builtin = BuiltinCase::ALL.into_iter().map(builtin_case);
    data.chain(builtin).collect()
}

/// The gateway under test, as the cases see it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The base URL, `http://host:port` (node 0's, with several targets).
    pub url: String,
    /// Every node's base URL, in `--target` order (`url` first); the case
    /// clients' `node` indexes it.
    pub nodes: Vec<String>,
    /// `host:port` of the URL (and its TLS setup), for raw requests.
    pub authority: Peer,
    /// `host:port` of the gateway the heartbeat cases use (the target itself,
    /// or a second embedded gateway with a fast heartbeat).
    pub heartbeat_authority: Peer,
    /// Mints the case clients' tokens.
    pub mint: TokenMint,
    /// The secret, when this run started the gateway itself.
    pub embedded_secret: Option<String>,
    /// The socket.io version the target speaks.
    pub version: Version,
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case name.
    pub name: String,
    /// Its category.
    pub category: Category,
    /// The docs/protocol.md statement.
    pub statement: String,
    /// What happened.
    pub verdict: Verdict,
    /// How long it took.
    pub duration: Duration,
}

impl CaseResult {
    /// The result as text: `PASS name`, `SKIP name (reason)`, or `FAIL name`
    /// followed by the indented statement and evidence.
    pub fn render(&self) -> String {
        match &self.verdict {
            Verdict::Pass => format!("PASS {}", self.name),
            Verdict::Skip(reason) => format!("SKIP {} ({reason})", self.name),
            Verdict::Fail(evidence) => {
                let mut out = format!("FAIL {}\n    statement: {}", self.name, self.statement);
                for line in evidence.lines() {
                    out.push_str("\n    ");
                    out.push_str(line);
                }
                out
            }
        }
    }
}

/// Every result of a run.
#[derive(Debug, Clone, Default)]
pub struct ConformReport {
    /// In case order.
    pub results: Vec<CaseResult>,
}

impl ConformReport {
    fn count(&self, pred: impl Fn(&Verdict) -> bool) -> usize {
        self.results.iter().filter(|r| pred(&r.verdict)).count()
    }

    /// The final line: `N passed, N failed` and, when any, `, N skipped`.
    pub fn summary_line(&self) -> String {
        let passed = self.count(|v| *v == Verdict::Pass);
        let failed = self.count(|v| matches!(v, Verdict::Fail(_)));
        let skipped = self.count(|v| matches!(v, Verdict::Skip(_)));
        let mut line = format!("{passed} passed, {failed} failed");
        if skipped > 0 {
            line.push_str(&format!(", {skipped} skipped"));
        }
        line
    }

    /// 0 when nothing failed, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        u8::from(
            self.results
                .iter()
                .any(|r| matches!(r.verdict, Verdict::Fail(_))),
        )
    }

    /// The results as `conformance.json` reads them.
    pub fn to_conformance(&self) -> Conformance {
        let cases = self
            .results
            .iter()
            .map(|r| {
                let (status, evidence) = match &r.verdict {
                    Verdict::Pass => (CaseStatus::Pass, serde_json::Value::Null),
                    Verdict::Fail(e) => (
                        CaseStatus::Fail,
                        format!("{e}\nstatement: {}", r.statement).into(),
                    ),
                    Verdict::Skip(reason) => (CaseStatus::Skipped, reason.clone().into()),
                };
                ConformanceCase {
                    name: r.name.clone(),
                    status,
                    evidence,
                    duration_ms: r.duration.as_secs_f64() * 1000.0,
                }
            })
            .collect();
        Conformance { cases }
    }
}

/// Loads and filters the cases, starts (or reaches) the gateway, runs the
/// cases in small concurrent batches and hands each result to `on_result`,
/// in case order. Writes `conformance.json` and JUnit XML when asked.
pub async fn run(
    options: &ConformOptions,
    mut on_result: impl FnMut(&CaseResult),
) -> Result<ConformReport, ConformError> {
    let files = match &options.cases_dir {
        Some(dir) => load_dir(dir)?,
        None => load_builtin_files()?,
    };
    let profile = ProfileName::from(options.profile);
    let cases: Vec<Case> = cases_for(options.version, files)
        .into_iter()
        .filter(|c| c.applies_to(profile))
        .filter(|c| {
            options
                .only
                .as_deref()
                .is_none_or(|p| glob_match(p, &c.name))
        })
        .collect();
    if cases.is_empty() {
        return Err(ConformError::Usage(format!(
            "no case matches --only {:?} in the {profile:?} profile",
            options.only.as_deref().unwrap_or("*")
        )));
    }
    check_nodes(&cases, options.targets.len())?;
    let gateways = Gateways::start(options).await?;
    let target = &gateways.target;
    reachable(target).await?;
    other_nodes_reachable(target).await?;
    let mut report = ConformReport::default();
    let mut results = futures_util::stream::iter(cases.iter().enumerate())
        .map(|(i, case)| run_one(case, target, i))
        .buffered(BATCH);
    while let Some(result) = results.next().await {
        on_result(&result);
        report.results.push(result);
    }
    drop(results);
    gateways.stop().await;
    write_outputs(options, &report)?;
    Ok(report)
}

/// With several targets (a cluster run), every selected case must name only
/// nodes that were given; with one, the `cluster` cases are skipped instead.
fn check_nodes(cases: &[Case], targets: usize) -> Result<(), ConformError> {
    if targets > MAX_NODES as usize {
        return Err(ConformError::Usage(format!(
            "{targets} targets given; at most {MAX_NODES}"
        )));
    }
    if targets < 2 {
        return Ok(());
    }
    for case in cases {
        if let Some((node, at)) = &case.highest_node {
            if *node as usize >= targets {
                return Err(ConformError::InvalidCase {
                    at: at.clone(),
                    message: format!(
                        "case {}: node {node} is not among the {targets} targets given (nodes 0 to {})",
                        case.name,
                        targets - 1
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Why `case` cannot run against `nodes` targets, if it cannot.
fn cluster_skip(case: &Case, nodes: usize) -> Option<String> {
    (case.category == Category::Cluster && nodes < 2).then(|| {
        format!(
            "a cluster case: needs 2 targets or more (--target repeated, one per node of one cluster); {nodes} given"
        )
    })
}

/// Cases whose statement socket.io 2.x does not share (its server ignores
/// these packets instead of closing the connection), with the reason shown.
const NOT_IN_SOCKETIO_2: [&str; 3] = [
    "socketio.malformed.event-for-unconnected-namespace-closes",
    "socketio.malformed.unknown-packet-type-closes",
    "socketio.malformed.second-connect-closes",
];

/// Why `case` cannot run against a socket.io 2.x target, if it cannot: the
/// built-in cases and raw HTTP steps speak Engine.IO v4 frames themselves,
/// socket.io 2.x has no CONNECT `auth` payload, and it keeps the connection
/// open where §1.5 (socket.io 4) closes it.
fn v2_skip(case: &Case) -> Option<&'static str> {
    if NOT_IN_SOCKETIO_2.contains(&case.name.as_str()) {
        return Some("socket.io 2.x ignores this packet rather than closing the connection");
    }
    match &case.body {
        CaseBody::Builtin(b) if BuiltinCase::V3.contains(b) => None,
        CaseBody::Builtin(_) => Some("a raw Engine.IO v4 case; not run against socket.io 2.x"),
        CaseBody::Steps(spec) if spec.clients.values().any(|c| c.auth.is_some()) => {
            Some("socket.io 2.x has no CONNECT auth payload")
        }
        CaseBody::Steps(spec)
            if spec
                .steps
                .iter()
                .any(|s| matches!(s.value, case::Step::Http(_))) =>
        {
            Some("raw Engine.IO v4 HTTP requests; not run against socket.io 2.x")
        }
        CaseBody::Steps(_) => None,
    }
}

async fn run_one(case: &Case, target: &Target, index: usize) -> CaseResult {
    let start = Instant::now();
    let tag = format!("{index:03}{:04x}", rand::random::<u16>());
    let play = async {
        if let Some(why) = cluster_skip(case, target.nodes.len()) {
            return Verdict::Skip(why);
        }
        if target.version == Version::V2 {
            if let Some(why) = v2_skip(case) {
                return Verdict::Skip(why.into());
            }
        }
        match &case.body {
            CaseBody::Steps(spec) => match runner::run_case(spec, target, &tag).await {
                Ok(()) => Verdict::Pass,
                Err(evidence) => Verdict::Fail(evidence),
            },
            CaseBody::Builtin(b) => b.run(target).await,
        }
    };
    let verdict = tokio::time::timeout(CASE_LIMIT, play)
        .await
        .unwrap_or_else(|_| {
            Verdict::Fail(format!(
                "expected: the case to finish within {CASE_LIMIT:?}\ngot: it was still running"
            ))
        });
    CaseResult {
        name: case.name.clone(),
        category: case.category,
        statement: case.statement.clone(),
        verdict,
        duration: start.elapsed(),
    }
}

/// The gateways this run started, if any, and the target the cases use.
struct Gateways {
    target: Target,
    running: Vec<chorus_gateway::RunningGateway>,
}

impl Gateways {
    async fn start(options: &ConformOptions) -> Result<Self, ConformError> {
        if let Some(url) = options.targets.first() {
            let secret = std::env::var(&options.jwt_secret_env)
                .map_err(|_| ConformError::MissingSecret(options.jwt_secret_env.clone()))?;
            let (authority, secure) = authority_of(url)?;
            let tls = if secure {
                Some(Tls::new(&options.tls).map_err(|e| ConformError::Usage(e.to_string()))?)
            } else {
                None
            };
            let authority = Peer { authority, tls };
            return Ok(Self {
                target: Target {
                    url: url.trim_end_matches('/').to_owned(),
                    nodes: options
                        .targets
                        .iter()
                        .map(|u| u.trim_end_matches('/').to_owned())
                        .collect(),
                    heartbeat_authority: authority.clone(),
                    authority,
                    mint: TokenMint::new(secret),
                    embedded_secret: None,
                    version: options.version,
                },
                running: Vec::new(),
            });
        }
        if options.version == Version::V2 {
            return Err(ConformError::Usage(
                "--socketio-version 2 needs --target: the reference gateway speaks socket.io 4"
                    .into(),
            ));
        }
        let secret = format!("{:032x}", rand::random::<u128>());
        let config = chorus_gateway::GatewayConfig {
            addr: "127.0.0.1:0".parse().expect("a loopback address"),
            profile: options.profile,
            jwt_secret: secret.clone(),
            ..chorus_gateway::GatewayConfig::default()
        };
        let fast = chorus_gateway::GatewayConfig {
            ping_interval_ms: FAST_PING_MS,
            ping_timeout_ms: FAST_PING_MS,
            ..config.clone()
        };
        let main = chorus_gateway::start(config).await?;
        let heartbeat = chorus_gateway::start(fast).await?;
        let authority = main.addr().to_string();
        let plain = |authority| Peer {
            authority,
            tls: None,
        };
        Ok(Self {
            target: Target {
                url: format!("http://{authority}"),
                nodes: vec![format!("http://{authority}")],
                authority: plain(authority),
                heartbeat_authority: plain(heartbeat.addr().to_string()),
                mint: TokenMint::new(secret.clone()),
                embedded_secret: Some(secret),
                version: Version::V4,
            },
            running: vec![main, heartbeat],
        })
    }

    async fn stop(self) {
        for gateway in self.running {
            gateway.shutdown().await;
        }
    }
}

/// `host:port` of an `http://`, `ws://`, `https://` or `wss://` URL, and
/// whether it is a secure one.
fn authority_of(url: &str) -> Result<(String, bool), ConformError> {
    let (rest, secure) = [
        ("http://", false),
        ("ws://", false),
        ("https://", true),
        ("wss://", true),
    ]
    .iter()
    .find_map(|&(scheme, secure)| Some((url.strip_prefix(scheme)?, secure)))
    .ok_or_else(|| ConformError::Usage(format!("--target {url}: expected http(s)://host:port")))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(ConformError::Usage(format!("--target {url}: no host")));
    }
    let authority = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_owned()
    } else {
        format!("{authority}:{}", if secure { 443 } else { 80 })
    };
    Ok((authority, secure))
}

/// Checks that every node after the first answers an Engine.IO handshake,
/// over the first one's scheme.
async fn other_nodes_reachable(target: &Target) -> Result<(), ConformError> {
    for (i, url) in target.nodes.iter().enumerate().skip(1) {
        let (authority, secure) = authority_of(url)?;
        if secure != target.authority.tls.is_some() {
            return Err(ConformError::Usage(format!(
                "--target {url}: every target must use the scheme of the first ({})",
                target.url
            )));
        }
        let node = Target {
            url: url.clone(),
            authority: Peer {
                authority,
                tls: target.authority.tls.clone(),
            },
            ..target.clone()
        };
        reachable(&node).await.map_err(|e| match e {
            ConformError::Unreachable { url, reason } => ConformError::Unreachable {
                url,
                reason: format!("(node {i}) {reason}"),
            },
            other => other,
        })?;
    }
    Ok(())
}

/// Checks that the target answers an Engine.IO polling handshake.
async fn reachable(target: &Target) -> Result<(), ConformError> {
    let unreachable = |reason: String| ConformError::Unreachable {
        url: target.url.clone(),
        reason,
    };
    let handshake = match target.version {
        Version::V4 => "/socket.io/?EIO=4&transport=polling",
        Version::V2 => "/socket.io/?EIO=3&transport=polling&b64=1",
    };
    let response = http::http_exchange(&target.authority, "GET", handshake, &[], b"")
        .await
        .map_err(unreachable)?;
    let body = String::from_utf8_lossy(&response.body);
    if let Some(server) = other_version(target.version, response.status, &body) {
        return Err(ConformError::Version {
            url: target.url.clone(),
            server,
        });
    }
    if response.status == 200 {
        Ok(())
    } else {
        Err(unreachable(format!(
            "the Engine.IO handshake got HTTP {}",
            response.status
        )))
    }
}

/// The version a handshake answer shows the server speaks, when it is not
/// `ours`: socket.io 2.x answers `EIO=4` with a v3 open packet (it does not
/// check the revision); socket.io 3+ answers `EIO=3` with HTTP 400 code 5.
fn other_version(ours: Version, status: u16, body: &str) -> Option<Version> {
    match ours {
        Version::V4 if status == 200 => {
            let first = chorus_protocol::engineio::payload_records(Version::V2, body).next()?;
            let data = first.ok()?.strip_prefix('0')?;
            chorus_protocol::engineio::OpenPacket::parse_as(Version::V2, data)
                .is_ok()
                .then_some(Version::V2)
        }
        Version::V2 if status == 400 && body.contains("\"code\":5") => Some(Version::V4),
        _ => None,
    }
}

/// Writes `conformance.json` (into `--out`, or a temporary directory when
/// only `--junit` is asked) and renders the JUnit XML from it.
fn write_outputs(options: &ConformOptions, report: &ConformReport) -> Result<(), ConformError> {
    if options.out.is_none() && options.junit.is_none() {
        return Ok(());
    }
    let dir = match &options.out {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("chorus-conform-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).map_err(|e| FileError::new(&dir, e))?;
    let json_path = dir.join("conformance.json");
    let json = serde_json::to_string_pretty(&report.to_conformance())
        .expect("conformance results serialize");
    std::fs::write(&json_path, json).map_err(|e| FileError::new(&json_path, e))?;
    if let Some(junit) = &options.junit {
        let text =
            std::fs::read_to_string(&json_path).map_err(|e| FileError::new(&json_path, e))?;
        let conformance: Conformance =
            serde_json::from_str(&text).map_err(|e| FileError::new(&json_path, e.into()))?;
        let suite =
            format!("chorus conform {:?}", ProfileName::from(options.profile)).to_lowercase();
        std::fs::write(junit, render_junit(&conformance, &suite))
            .map_err(|e| FileError::new(junit, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handshake_of_the_other_version_is_named() {
        let v3 = r#"78:0{"sid":"x","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000}2:40"#;
        assert_eq!(other_version(Version::V4, 200, v3), Some(Version::V2));
        assert_eq!(other_version(Version::V2, 200, v3), None);
        let v4 = r#"0{"sid":"x","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        assert_eq!(other_version(Version::V4, 200, v4), None);
        let refusal = r#"{"code":5,"message":"Unsupported protocol version"}"#;
        assert_eq!(other_version(Version::V2, 400, refusal), Some(Version::V4));
        assert_eq!(other_version(Version::V4, 400, refusal), None);
    }

    #[test]
    fn authorities_get_a_port() {
        assert_eq!(
            authority_of("http://127.0.0.1:3000/").unwrap(),
            ("127.0.0.1:3000".to_owned(), false)
        );
        assert_eq!(
            authority_of("ws://gw").unwrap(),
            ("gw:80".to_owned(), false)
        );
        assert_eq!(
            authority_of("https://gw").unwrap(),
            ("gw:443".to_owned(), true)
        );
        assert!(authority_of("ftp://gw").is_err());
    }

    #[test]
    fn cluster_cases_are_skipped_alone_and_checked_against_the_targets() {
        let text = "cases:\n  - name: c.two\n    profiles: [strict]\n    category: cluster\n    statement: s\n    clients: {a: {}, b: {node: 1}}\n    steps:\n      - connect: b\n";
        let cases: Vec<Case> = all_cases(parse_cases(text, "c.yml").expect("valid"))
            .into_iter()
            .filter(|c| c.name == "c.two")
            .collect();
        let case = &cases[0];
        let skip = cluster_skip(case, 1).expect("one target skips a cluster case");
        assert!(skip.ends_with("; 1 given"), "{skip}");
        assert_eq!(cluster_skip(case, 2), None);
        assert!(check_nodes(&cases, 1).is_ok());
        assert!(check_nodes(&cases, 2).is_ok());
        let err = check_nodes(&cases, 17).unwrap_err();
        assert_eq!(err.to_string(), "17 targets given; at most 16");
        assert_eq!(err.exit_code(), 2);
        let three = text.replace("node: 1", "node: 2");
        let cases = all_cases(parse_cases(&three, "c.yml").expect("valid"));
        let err = check_nodes(&cases, 2).unwrap_err().to_string();
        assert!(
            err.starts_with("c.yml:6:32: case c.two: node 2 is not among"),
            "{err}"
        );
        // A case that is not `cluster` is never skipped for want of nodes.
        let builtin = all_cases(Vec::new());
        assert!(builtin.iter().all(|c| cluster_skip(c, 1).is_none()));
    }

    #[test]
    fn summary_line_and_exit_code() {
        let result = |verdict| CaseResult {
            name: "a.b".into(),
            category: Category::Events,
            statement: "§2".into(),
            verdict,
            duration: Duration::from_millis(5),
        };
        let report = ConformReport {
            results: vec![
                result(Verdict::Pass),
                result(Verdict::Fail("expected: x\ngot: y".into())),
                result(Verdict::Skip("why".into())),
            ],
        };
        assert_eq!(report.summary_line(), "1 passed, 1 failed, 1 skipped");
        assert_eq!(report.exit_code(), 1);
        assert_eq!(
            report.results[1].render(),
            "FAIL a.b\n    statement: §2\n    expected: x\n    got: y"
        );
        let json = report.to_conformance();
        assert_eq!(json.cases[2].status, CaseStatus::Skipped);
    }
}
