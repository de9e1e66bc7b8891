//! The typed scenario model, as the run engine consumes it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rand::Rng;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::client::{Tls, TlsConfig, Transport};
use chorus_protocol::Version;

use super::template::{JsonTemplate, Template};
use super::threshold::Threshold;
use super::units;

/// The event name an `expect` right after `connect` uses to say the connect
/// is meant to be refused: `- expect: { event: connect_error, match: { data:
/// { code: INVALID_TOKEN } } }` matches the CONNECT_ERROR payload, and the
/// flow goes on unconnected. A refusal without it is a failed connect.
pub const CONNECT_ERROR_EVENT: &str = "connect_error";

/// How long `expect` and acked `emit` wait when no timeout is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, shown in reports.
    pub name: String,
    /// Free text shown in reports.
    #[serde(default)]
    pub description: Option<String>,
    /// Base URLs of the gateway's nodes (`http://127.0.0.1:3000`, or a
    /// list of them: clients are spread over the nodes); empty runs the
    /// embedded gateway.
    #[serde(default, deserialize_with = "string_or_list")]
    pub target: Vec<String>,
    /// How many clients each node of `target` gets, relative to the others
    /// (as many entries as `target`); without it, round-robin.
    #[serde(default)]
    pub weights: Option<Vec<f64>>,
    /// Socket.IO connection options.
    #[serde(default)]
    pub socketio: SocketIoConfig,
    /// TLS for `https://`/`wss://` targets: `ca`, `insecure`, `server_name`,
    /// `client_cert`, `client_key` (paths relative to the scenario). Without
    /// it a secure target is verified against the system's roots.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// The TLS setup built from `tls` when the scenario is loaded (its files
    /// read then), shared by every client of the run.
    #[serde(skip)]
    pub tls_client: Option<Tls>,
    /// The protocol model the run is checked against: `seed`, `strict`, or a
    /// model file (relative to the scenario). Default: the embedded gateway's
    /// profile, or `seed` for another target.
    #[serde(default)]
    pub protocol: Option<String>,
    /// How each client gets its token.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// What a client does when its session drops: reconnect with backoff
    /// (socket.io-client's `reconnection*` options). Absent: it stays dropped.
    #[serde(default)]
    pub reconnect: Option<Reconnect>,
    /// Rooms spread over the clients: `{{room}}` (and `{{room_1}}`, …)
    /// in templates.
    #[serde(default)]
    pub rooms: Option<super::rooms::RoomSpread>,
    /// Per-client variables, rendered in order when a client starts.
    #[serde(default, deserialize_with = "ordered_map")]
    pub vars: Vec<(String, Template)>,
    /// The kinds of clients and what each does.
    pub groups: Vec<Group>,
    /// How many clients run, and when.
    pub load: LoadConfig,
    /// Hard cap on the run's length.
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub max_duration: Option<Duration>,
    /// Pass/fail criteria, checked on the final summary (and live with `abort_on_fail`).
    #[serde(default, deserialize_with = "super::threshold::thresholds")]
    pub thresholds: Vec<Threshold>,
    /// Stop the run as soon as a threshold is breached.
    #[serde(default)]
    pub abort_on_fail: bool,
    /// The directory of the scenario file (relative paths are resolved from it).
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file name as given (errors found against the protocol model name it).
    #[serde(skip)]
    pub origin: String,
}

/// Socket.IO connection options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketIoConfig {
    /// The Engine.IO path, `/socket.io/` by default.
    #[serde(default = "default_path")]
    pub path: String,
    /// The Socket.IO namespace, `/` by default.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The socket.io version the gateway runs: `4` (default; Engine.IO v4,
    /// also right for socket.io 3) or `2` (socket.io 2.x, Engine.IO v3).
    #[serde(default, deserialize_with = "socketio_version")]
    pub version: Version,
    /// The transport: `websocket` (default), `polling` or `polling-upgrade`.
    #[serde(default)]
    pub transport: Transport,
    /// Extra handshake query parameters (templated).
    #[serde(default, deserialize_with = "ordered_map")]
    pub query: Vec<(String, Template)>,
    /// Extra handshake headers (templated).
    #[serde(default, deserialize_with = "ordered_map")]
    pub headers: Vec<(String, Template)>,
    /// The CONNECT packet's auth payload (templated JSON).
    #[serde(default)]
    pub auth: Option<JsonTemplate>,
}

/// `socketio.version`: the integer 2 or 4.
fn socketio_version<'de, D: Deserializer<'de>>(de: D) -> Result<Version, D::Error> {
    let major = u64::deserialize(de)?;
    Version::from_major(major).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "socketio.version must be 2 (socket.io 2.x) or 4 (socket.io 3 and 4), not {major}"
        ))
    })
}

fn default_path() -> String {
    "/socket.io/".into()
}

fn default_namespace() -> String {
    "/".into()
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        SocketIoConfig {
            path: default_path(),
            namespace: default_namespace(),
            version: Version::V4,
            transport: Transport::default(),
            query: Vec::new(),
            headers: Vec::new(),
            auth: None,
        }
    }
}

/// Where a token comes from and where it goes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Mint a JWT per client.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    /// Take tokens from a CSV file, round-robin per client.
    #[serde(default)]
    pub csv: Option<CsvConfig>,
    /// Where the token is sent.
    #[serde(default)]
    pub place: TokenPlace,
}

/// A JWT minted per virtual client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The environment variable holding the HMAC secret.
    #[serde(default = "default_secret_env")]
    pub secret_env: String,
    /// The signing algorithm.
    #[serde(default)]
    pub algorithm: JwtAlgorithm,
    /// The claims (a templated object); `iat` and `exp` are added.
    #[serde(default = "empty_claims")]
    pub claims: JsonTemplate,
    /// `exp = iat + lifetime`.
    #[serde(default = "default_lifetime", deserialize_with = "units::duration")]
    pub lifetime: Duration,
}

fn default_secret_env() -> String {
    "JWT_SECRET".into()
}

fn empty_claims() -> JsonTemplate {
    JsonTemplate::Object(Vec::new())
}

fn default_lifetime() -> Duration {
    Duration::from_secs(3600)
}

/// An HMAC JWT algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256.
    #[default]
    HS256,
    /// HMAC-SHA384.
    HS384,
    /// HMAC-SHA512.
    HS512,
}

/// Tokens read from a CSV file with a header row.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvConfig {
    /// The file, relative to the scenario file.
    pub file: PathBuf,
    /// The header of the column holding the tokens.
    #[serde(default = "default_column")]
    pub column: String,
    /// The tokens, read when the scenario is loaded.
    #[serde(skip)]
    pub tokens: Vec<String>,
}

fn default_column() -> String {
    "token".into()
}

/// Where the token travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenPlace {
    /// The handshake query parameter `token`.
    #[default]
    Query,
    /// The handshake header `Authorization: Bearer <token>`.
    Header,
    /// The CONNECT payload `{"token": …}`.
    Auth,
}

/// `reconnect: { attempts, delay, max_delay, jitter }`: after a session
/// drops (not when the flow or the server's namespace DISCONNECT ends it),
/// try again at most `attempts` times, the k-th try (from 0) after
/// `delay · 2^k`, capped at `max_delay` and randomised by ±`jitter`, as
/// socket.io-client's `reconnectionAttempts`, `reconnectionDelay`,
/// `reconnectionDelayMax` and `randomizationFactor` do.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reconnect {
    /// The most tries after one drop; 0 (the default) never reconnects.
    #[serde(default)]
    pub attempts: u32,
    /// The wait before the first try (1 s by default).
    #[serde(
        default = "default_reconnect_delay",
        deserialize_with = "units::duration"
    )]
    pub delay: Duration,
    /// The longest wait between tries (5 s by default).
    #[serde(
        default = "default_reconnect_max_delay",
        deserialize_with = "units::duration"
    )]
    pub max_delay: Duration,
    /// How much each wait is randomised, 0 to 1 (0.5 by default: ±50 %).
    #[serde(default = "default_jitter")]
    pub jitter: f64,
}

fn default_reconnect_delay() -> Duration {
    Duration::from_secs(1)
}

fn default_reconnect_max_delay() -> Duration {
    Duration::from_secs(5)
}

fn default_jitter() -> f64 {
    0.5
}

impl Reconnect {
    /// The most tries one drop may take (validation's bound: it also bounds
    /// a receiver's presence windows in the ledger).
    pub const MAX_ATTEMPTS: u32 = 1_000;

    /// Whether a dropped client tries again at all.
    pub fn enabled(&self) -> bool {
        self.attempts > 0
    }

    /// The wait before try `k` (from 0): `delay · 2^k` capped at
    /// `max_delay`, then moved by up to ±`jitter` of itself, and capped again.
    pub fn backoff(&self, k: u32, rng: &mut impl Rng) -> Duration {
        let base = self
            .delay
            .saturating_mul(1u32 << k.min(20))
            .min(self.max_delay);
        if self.jitter <= 0.0 {
            return base;
        }
        let spread = self.jitter * (2.0 * rng.random::<f64>() - 1.0);
        base.mul_f64((1.0 + spread).max(0.0)).min(self.max_delay)
    }
}

/// A kind of client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Unique name, used in metrics.
    pub name: String,
    /// Relative share of the clients that `count`s leave.
    #[serde(default)]
    pub weight: Option<f64>,
    /// Absolute number of clients, served first.
    #[serde(default)]
    pub count: Option<u64>,
    /// This group's own `reconnect` behaviour, instead of the scenario's.
    #[serde(default)]
    pub reconnect: Option<Reconnect>,
    /// What each client of this group does, in order.
    pub flow: Vec<Step>,
}

/// One step of a flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Open the connection and join the namespace.
    Connect,
    /// Send an event.
    Emit(Emit),
    /// Wait for an event.
    Expect(Expect),
    /// Repeat steps.
    Loop(Loop),
    /// Pause.
    Think(Think),
    /// Stay connected, receiving, for a while.
    Listen(#[serde(deserialize_with = "units::duration")] Duration),
    /// Close the connection.
    Disconnect,
    /// Join a room (the model's room join event): `join_room: "{{room}}"`.
    JoinRoom(Template),
    /// Leave a room (the model's room leave event).
    LeaveRoom(Template),
}

/// `emit: { event, data, ack, ack_timeout }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Emit {
    /// The event name.
    pub event: String,
    /// The payload (templated JSON); none sends the event without arguments.
    #[serde(default)]
    pub data: Option<JsonTemplate>,
    /// Ask for an acknowledgement and time it.
    #[serde(default)]
    pub ack: bool,
    /// How long to wait for the ack.
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub ack_timeout: Duration,
    /// The room a room-scoped broadcast goes to (templated): the driver
    /// adds it to `data` under the model's room field.
    #[serde(default)]
    pub room: Option<Template>,
}

/// `expect: { event, timeout, match, capture }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The event name.
    pub event: String,
    /// How long to wait.
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// The first argument must contain this (templated JSON, see [`super::json_contains`]).
    #[serde(default, rename = "match")]
    pub matches: Option<JsonTemplate>,
    /// Values to keep from the first argument, by variable name.
    #[serde(default, deserialize_with = "captures")]
    pub capture: Vec<Capture>,
}

/// A value captured from a received payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    /// The variable it is stored in.
    pub var: String,
    /// The dotted path into the payload (`clientId`, `user.name`, `0`).
    pub path: Vec<String>,
}

impl Capture {
    /// The value at `path` in `payload`: strings as is, anything else as JSON.
    pub fn extract(&self, payload: &serde_json::Value) -> Option<String> {
        let value = self.path.iter().try_fold(payload, |v, seg| match v {
            serde_json::Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => v.get(seg),
        })?;
        Some(match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

/// `loop: { duration, count, rate, arrival, steps }`; ends at whichever of
/// `duration` and `count` comes first.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Loop {
    /// Stop after this long.
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub duration: Option<Duration>,
    /// Stop after this many iterations.
    #[serde(default)]
    pub count: Option<u64>,
    /// Start iterations at this rate (per client, per second).
    #[serde(default, deserialize_with = "units::opt_rate")]
    pub rate: Option<f64>,
    /// How iterations are spaced at `rate`.
    #[serde(default)]
    pub arrival: Arrival,
    /// The repeated steps.
    pub steps: Vec<Step>,
}

/// How events are spaced at a given rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    /// Evenly, `1/rate` apart.
    #[default]
    Constant,
    /// A Poisson process: exponential gaps of mean `1/rate`.
    Poisson,
}

impl Arrival {
    /// The gap before the next event at `rate` per second.
    pub fn next_gap(self, rate: f64, rng: &mut impl Rng) -> Duration {
        let mean = 1.0 / rate;
        let secs = match self {
            Arrival::Constant => mean,
            Arrival::Poisson => -mean * (1.0 - rng.random::<f64>()).ln(),
        };
        Duration::from_secs_f64(secs)
    }
}

/// A pause.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Think {
    /// Exactly this long (`think: 200ms`).
    Fixed(Duration),
    /// Uniformly between two bounds (`think: { uniform: [100ms, 500ms] }`).
    Uniform(Duration, Duration),
    /// Exponentially distributed with this mean (`think: { exponential: 300ms }`).
    Exponential(Duration),
}

impl Think {
    /// Draws one pause.
    pub fn sample(self, rng: &mut impl Rng) -> Duration {
        match self {
            Think::Fixed(d) => d,
            Think::Uniform(lo, hi) => rng.random_range(lo..=hi),
            Think::Exponential(mean) => mean.mul_f64(-(1.0 - rng.random::<f64>()).ln()),
        }
    }
}

impl<'de> Deserialize<'de> for Think {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case", deny_unknown_fields)]
        enum Random {
            Uniform(
                #[serde(deserialize_with = "units::duration")] Duration,
                #[serde(deserialize_with = "units::duration")] Duration,
            ),
            Exponential(#[serde(deserialize_with = "units::duration")] Duration),
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Think;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration, `uniform: [min, max]` or `exponential: mean`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Think, E> {
                match units::parse_duration(v) {
                    Ok(d) if !d.is_zero() => Ok(Think::Fixed(d)),
                    Ok(_) => Err(E::custom("think time must be greater than zero")),
                    Err(e) => Err(E::custom(e)),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<Think, A::Error> {
                let random = Random::deserialize(serde::de::value::MapAccessDeserializer::new(a))?;
                Ok(match random {
                    Random::Uniform(lo, hi) if lo <= hi => Think::Uniform(lo, hi),
                    Random::Uniform(..) => {
                        return Err(serde::de::Error::custom(
                            "uniform think bounds must be [min, max] with min <= max",
                        ))
                    }
                    Random::Exponential(mean) => Think::Exponential(mean),
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `load:`: the client schedule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadConfig {
    /// Phases, run in order.
    pub phases: Vec<Phase>,
    /// A shared message schedule for the loops that have no `rate` of their own.
    #[serde(default)]
    pub messages: Option<MessageSchedule>,
}

/// One load phase.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Phase {
    /// Closed model: move the number of connected clients linearly to `to` over `over`.
    Ramp {
        /// The target number of clients.
        to: u64,
        /// How long the ramp takes.
        #[serde(deserialize_with = "units::duration")]
        over: Duration,
    },
    /// Closed model: keep the current number of clients.
    Hold(#[serde(deserialize_with = "units::duration")] Duration),
    /// Open model: start new clients at `rate` per second for `duration`.
    Arrive {
        /// New clients per second.
        #[serde(deserialize_with = "units::rate")]
        rate: f64,
        /// How long arrivals go on.
        #[serde(deserialize_with = "units::duration")]
        duration: Duration,
        /// At most this many clients connected at once (arrivals beyond it are dropped and counted).
        #[serde(default)]
        max: Option<u64>,
        /// How arrivals are spaced.
        #[serde(default)]
        arrival: Arrival,
    },
}

impl Phase {
    /// How many clients an `arrive` phase starts: `rate × duration`, rounded
    /// down (a product within a billionth of an integer counts as that
    /// integer, so `20/s` for `10s` is exactly 200); 0 for the other phases.
    pub fn arrivals(&self) -> u64 {
        match self {
            Phase::Arrive { rate, duration, .. } => {
                let n = rate * duration.as_secs_f64();
                let n = (n + n.max(1.0) * 1e-9).floor();
                if n.is_finite() && n >= 0.0 {
                    n.min(u64::MAX as f64) as u64
                } else {
                    0
                }
            }
            Phase::Ramp { .. } | Phase::Hold(_) => 0,
        }
    }

    /// How long the phase lasts.
    pub fn duration(&self) -> Duration {
        match self {
            Phase::Ramp { over, .. } => *over,
            Phase::Hold(d) => *d,
            Phase::Arrive { duration, .. } => *duration,
        }
    }
}

/// A global message schedule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageSchedule {
    /// Loop iterations per second, over all clients.
    #[serde(deserialize_with = "units::rate")]
    pub rate: f64,
    /// How iterations are spaced.
    #[serde(default)]
    pub arrival: Arrival,
}

/// `target`: one URL, or a list of them.
fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a URL or a list of URLs")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_owned()])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(url) = a.next_element::<String>()? {
                out.push(url);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// A mapping kept in source order.
fn ordered_map<'de, D, T>(d: D) -> Result<Vec<(String, T)>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = Vec<(String, T)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(entry) = a.next_entry()? {
                out.push(entry);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

fn captures<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Capture>, D::Error> {
    struct CapturePath(Vec<String>);
    impl<'de> Deserialize<'de> for CapturePath {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            units::parse_scalar(d, "a dotted path like `user.name`", |text| {
                let path: Vec<String> = text.split('.').map(str::to_owned).collect();
                if path.iter().any(String::is_empty) {
                    return Err(format!(
                        "invalid capture path `{text}`, expected e.g. `clientId` or `user.name`"
                    ));
                }
                Ok(CapturePath(path))
            })
        }
    }
    Ok(ordered_map::<D, CapturePath>(d)?
        .into_iter()
        .map(|(var, path)| Capture { var, path: path.0 })
        .collect())
}

/// Assigns clients to groups: counted groups first, in order, then weights by
/// smooth weighted round-robin, so that any prefix of clients is split close
/// to the weights.
#[derive(Debug, Clone)]
pub struct GroupPicker {
    counts: Vec<(usize, u64)>,
    weights: Vec<(usize, f64)>,
    current: Vec<f64>,
    total_weight: f64,
}

impl GroupPicker {
    /// A picker for `groups` (as validated by the loader).
    pub fn new(groups: &[Group]) -> Self {
        let counts: Vec<(usize, u64)> = groups
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.count.map(|c| (i, c)))
            .collect();
        let weights: Vec<(usize, f64)> = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.count.is_none())
            .map(|(i, g)| (i, g.weight.unwrap_or(1.0)))
            .filter(|(_, w)| *w > 0.0)
            .collect();
        GroupPicker {
            current: vec![0.0; weights.len()],
            total_weight: weights.iter().map(|w| w.1).sum(),
            counts,
            weights,
        }
    }

    /// The group index of the next client, or `None` when only counted
    /// groups exist and they are all full.
    pub fn next_group(&mut self) -> Option<usize> {
        if let Some((index, left)) = self.counts.iter_mut().find(|(_, left)| *left > 0) {
            *left -= 1;
            return Some(*index);
        }
        let best = (0..self.weights.len()).max_by(|&a, &b| {
            let (ca, cb) = (
                self.current[a] + self.weights[a].1,
                self.current[b] + self.weights[b].1,
            );
            // Ties go to the earlier group.
            ca.total_cmp(&cb).then(b.cmp(&a))
        })?;
        for (c, w) in self.current.iter_mut().zip(&self.weights) {
            *c += w.1;
        }
        self.current[best] -= self.total_weight;
        Some(self.weights[best].0)
    }
}
