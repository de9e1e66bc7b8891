//! The case format: YAML files of cases, each a list of steps that a generic
//! runner plays (see the README's "Conformance" section), and the loader that types them and
//! points at the offending line and column when they are wrong.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, EnumAccess, VariantAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

use super::error::ConformError;
use super::tokens::TokenKind;
use crate::client::Transport;
use crate::error::FileError;
use crate::scenario::{saphyr_error, Location, Pos};

/// The case files shipped with chorus, compiled in so that `chorus conform`
/// works from any directory.
pub const BUILTIN_FILES: [(&str, &str); 8] = [
    (
        "scenarios/conformance/engineio.yml",
        include_str!("../../scenarios/conformance/engineio.yml"),
    ),
    (
        "scenarios/conformance/socketio.yml",
        include_str!("../../scenarios/conformance/socketio.yml"),
    ),
    (
        "scenarios/conformance/seed-events.yml",
        include_str!("../../scenarios/conformance/seed-events.yml"),
    ),
    (
        "scenarios/conformance/seed-auth.yml",
        include_str!("../../scenarios/conformance/seed-auth.yml"),
    ),
    (
        "scenarios/conformance/seed-malformed.yml",
        include_str!("../../scenarios/conformance/seed-malformed.yml"),
    ),
    (
        "scenarios/conformance/strict.yml",
        include_str!("../../scenarios/conformance/strict.yml"),
    ),
    (
        "scenarios/conformance/rooms.yml",
        include_str!("../../scenarios/conformance/rooms.yml"),
    ),
    (
        "scenarios/conformance/cluster.yml",
        include_str!("../../scenarios/conformance/cluster.yml"),
    ),
];

/// The most nodes a case may name (`node: 0` to `node: 15`), and so the most
/// targets one run uses.
pub const MAX_NODES: u32 = 16;
/// The most times one `emit` or `expect` step may repeat.
pub const MAX_REPEAT: u32 = 1000;

/// A protocol profile a case applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileName {
    /// docs/protocol.md sections 1–5.
    Seed,
    /// docs/protocol.md section 7 (and everything of section 2 it keeps).
    Strict,
}

impl From<chorus_gateway::Profile> for ProfileName {
    fn from(profile: chorus_gateway::Profile) -> Self {
        match profile {
            chorus_gateway::Profile::Seed => Self::Seed,
            chorus_gateway::Profile::Strict => Self::Strict,
        }
    }
}

/// What part of the contract a case checks; used to group and select results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Engine.IO: open packet, heartbeat, polling, upgrade, size limits.
    Engineio,
    /// Socket.IO: namespaces, CONNECT / CONNECT_ERROR, malformed packets.
    Socketio,
    /// Chat events, recipients, payload shapes and ordering.
    Events,
    /// Who may connect or send, and with which token.
    Auth,
    /// Input validation and what malformed input leaves behind.
    Validation,
    /// Acknowledgements.
    Ack,
    /// Rate limits, slow consumers.
    Limits,
    /// Graceful shutdown.
    Lifecycle,
    /// Rooms: membership, room-scoped events, isolation (strict).
    Rooms,
    /// Several nodes of one cluster: cross-node delivery and presence
    /// (needs `--target` repeated, one per node).
    Cluster,
}

impl Category {
    /// The lower-case name used in the case files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Engineio => "engineio",
            Self::Socketio => "socketio",
            Self::Events => "events",
            Self::Auth => "auth",
            Self::Validation => "validation",
            Self::Ack => "ack",
            Self::Limits => "limits",
            Self::Lifecycle => "lifecycle",
            Self::Rooms => "rooms",
            Self::Cluster => "cluster",
        }
    }
}

/// How case files spell the transports: `upgrade` where scenarios say
/// `polling-upgrade`.
const TRANSPORT_NAMES: &[&str] = &["websocket", "polling", "upgrade"];

/// Reads a case client's transport in the case files' spelling, with the
/// errors (and error positions) of a derived enum.
fn case_transport<'de, D: Deserializer<'de>>(d: D) -> Result<Transport, D::Error> {
    struct Enum;
    impl<'de> Visitor<'de> for Enum {
        type Value = Transport;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a transport")
        }
        fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Transport, A::Error> {
            let (Spelled(transport), variant) = data.variant()?;
            variant.unit_variant()?;
            Ok(transport)
        }
    }
    /// The variant name, checked where it is read so that errors point at it.
    struct Spelled(Transport);
    impl<'de> Deserialize<'de> for Spelled {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_identifier(Name)
        }
    }
    struct Name;
    impl Visitor<'_> for Name {
        type Value = Spelled;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("variant identifier")
        }
        fn visit_str<E: de::Error>(self, name: &str) -> Result<Spelled, E> {
            match name {
                "websocket" => Ok(Spelled(Transport::Websocket)),
                "polling" => Ok(Spelled(Transport::Polling)),
                "upgrade" => Ok(Spelled(Transport::PollingUpgrade)),
                _ => Err(E::unknown_variant(name, TRANSPORT_NAMES)),
            }
        }
    }
    d.deserialize_enum("Transport", TRANSPORT_NAMES, Enum)
}

/// A client a case uses, and how it presents its token.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// The transport (default websocket).
    #[serde(default, deserialize_with = "case_transport")]
    pub transport: Transport,
    /// The namespace (default `/chat`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Handshake query `token` parameters, in order (repeat for a duplicated
    /// parameter). When no token field is given at all: `[valid]`.
    #[serde(default)]
    pub query: Option<Vec<TokenKind>>,
    /// `Authorization: Bearer <token>` on the handshake.
    #[serde(default)]
    pub header: Option<TokenKind>,
    /// A raw `Authorization` header value; `{{token:KIND}}` is replaced by a token.
    #[serde(default)]
    pub authorization: Option<String>,
    /// The socket.io `auth` payload `{"token":"…"}` of the CONNECT packet.
    #[serde(default)]
    pub auth: Option<TokenKind>,
    /// The node it connects to: an index into the `--target` list (default
    /// 0); only `cluster` cases may name another.
    #[serde(default)]
    pub node: Option<Spanned<u32>>,
}

impl ClientSpec {
    /// The index of the node this client connects to.
    pub fn node_index(&self) -> usize {
        self.node.as_ref().map_or(0, |n| n.value as usize)
    }
}

/// How the server must have ended a client's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CloseExpect {
    /// The Engine.IO connection closed in any way.
    Any,
    /// Websocket close without a status (1005); over polling, any close of the session.
    NoStatus,
    /// Websocket close code 1009 (message too big).
    TooBig,
    /// The namespace was disconnected by the server (`41<nsp>,`).
    Namespace,
}

/// One step of a case.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Connect the named client (a refusal is recorded, for `expect: connect_error`).
    Connect(String),
    /// Emit an event with JSON arguments.
    Emit(EmitStep),
    /// Send one Socket.IO packet written out in full (`{{x:N}}` makes it large).
    Raw(RawStep),
    /// One HTTP request on a fresh connection, with the status it must get.
    Http(HttpStep),
    /// Sleep, e.g. `3s`.
    Wait(String),
    /// Something that must arrive (in order, per client).
    Expect(ExpectStep),
    /// Something that must not arrive within a window.
    ExpectNone(ExpectNoneStep),
    /// Leave the namespace and close the connection.
    Disconnect(String),
}

/// `emit`: an event from a client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmitStep {
    /// The client.
    pub client: String,
    /// The event name.
    pub event: String,
    /// The arguments after the name.
    #[serde(default)]
    pub args: Vec<Value>,
    /// Ask for an acknowledgement.
    #[serde(default)]
    pub ack: bool,
    /// Send it this many times in a row (default 1, at most [`MAX_REPEAT`]);
    /// `{{i}}` in the arguments is the repetition's number, from 0.
    #[serde(default)]
    pub repeat: Option<u32>,
}

/// `raw`: a Socket.IO packet as text, e.g. `2/chat,["joinChat",{bad`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// The client.
    pub client: String,
    /// The packet, without the Engine.IO `4` prefix.
    pub text: String,
}

/// `http`: a plain request to the gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStep {
    /// `GET` or `POST`.
    pub method: String,
    /// The request target, e.g. `/socket.io/?EIO=4&transport=polling&sid=nope`.
    pub target: String,
    /// The request body.
    #[serde(default)]
    pub body: String,
    /// The status the gateway must answer.
    pub status: u16,
}

/// `expect`: exactly one of `event`, `ack`, `connect_error`, `closed`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectStep {
    /// The client that receives.
    pub client: String,
    /// An EVENT with this name.
    #[serde(default)]
    pub event: Option<String>,
    /// The ACK of this client's last `emit` with `ack: true`.
    #[serde(default)]
    pub ack: bool,
    /// The connect was refused with a CONNECT_ERROR carrying this JSON (placeholders allowed).
    #[serde(default)]
    pub connect_error: Option<Value>,
    /// The server ended the session.
    #[serde(default)]
    pub closed: Option<CloseExpect>,
    /// The arguments, exactly (key order included).
    #[serde(default)]
    pub args: Option<Vec<Value>>,
    /// A subset of the arguments (objects: these keys; arrays: these elements).
    #[serde(default)]
    pub contains: Option<Vec<Value>>,
    /// A value that must appear nowhere in the arguments.
    #[serde(default)]
    pub excludes: Option<Value>,
    /// How long to wait (default 2s) for each.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Expect this many events in a row, in order (default 1, at most
    /// [`MAX_REPEAT`]); `{{i}}` in `args`, `contains` and `excludes` is the
    /// number of each, from 0.
    #[serde(default)]
    pub repeat: Option<u32>,
}

/// `expect-none`: no matching event (or, without `event`, no event at all) within `within`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectNoneStep {
    /// The client watched.
    pub client: String,
    /// Only events with this name count.
    #[serde(default)]
    pub event: Option<String>,
    /// Also an ACK counts.
    #[serde(default)]
    pub ack: bool,
    /// Only events whose arguments contain this subset count.
    #[serde(default)]
    pub contains: Option<Vec<Value>>,
    /// The window (default 500ms).
    #[serde(default)]
    pub within: Option<String>,
}

/// One case as written in a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSpec {
    /// Dotted, stable name, e.g. `seed.auth.no-token-connects`.
    pub name: String,
    /// The profiles it applies to.
    pub profiles: Vec<ProfileName>,
    /// What part of the contract it checks.
    pub category: Category,
    /// The docs/protocol.md section and sentence it checks.
    pub statement: String,
    /// The clients, by name.
    #[serde(default)]
    pub clients: BTreeMap<String, ClientSpec>,
    /// The steps, in order.
    pub steps: Vec<Spanned<Step>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    cases: Vec<Spanned<CaseSpec>>,
}

/// A loaded case and where it was written.
#[derive(Debug, Clone)]
pub struct LoadedCase {
    /// The case.
    pub spec: CaseSpec,
    /// Where the case starts (shown as `file:line:col`).
    pub origin: Location,
}

/// Parses one case file's text; `origin` names it in errors.
pub fn parse_cases(text: &str, origin: &str) -> Result<Vec<LoadedCase>, ConformError> {
    let file: CaseFile = serde_saphyr::from_str(text).map_err(|e| {
        let (pos, message) = saphyr_error(&e, 0);
        ConformError::InvalidCase {
            at: Location::new(origin, pos),
            message,
        }
    })?;
    let at = |loc: serde_saphyr::Location| Location::new(origin, Pos::from_location(loc));
    let mut cases = Vec::with_capacity(file.cases.len());
    for case in file.cases {
        let invalid = |loc, message| ConformError::InvalidCase {
            at: at(loc),
            message,
        };
        validate(&case.value).map_err(|m| invalid(case.referenced, m))?;
        validate_nodes(&case.value).map_err(|(loc, m)| invalid(loc, m))?;
        for step in &case.value.steps {
            validate_step(&case.value, &step.value).map_err(|m| invalid(step.referenced, m))?;
        }
        cases.push(LoadedCase {
            origin: at(case.referenced),
            spec: case.value,
        });
    }
    Ok(cases)
}

/// Loads every `*.yml` file of `dir`, in file-name order.
pub fn load_dir(dir: &Path) -> Result<Vec<LoadedCase>, ConformError> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| FileError::new(dir, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|e| FileError::new(&path, e))?;
        cases.extend(parse_cases(&text, &path.display().to_string())?);
    }
    check_unique(&cases)?;
    Ok(cases)
}

/// Loads the case files compiled into chorus.
pub fn load_builtin_files() -> Result<Vec<LoadedCase>, ConformError> {
    let mut cases = Vec::new();
    for (origin, text) in BUILTIN_FILES {
        cases.extend(parse_cases(text, origin)?);
    }
    check_unique(&cases)?;
    Ok(cases)
}

fn check_unique(cases: &[LoadedCase]) -> Result<(), ConformError> {
    let mut seen = std::collections::HashMap::new();
    for case in cases {
        if let Some(first) = seen.insert(case.spec.name.as_str(), &case.origin) {
            return Err(ConformError::InvalidCase {
                at: case.origin.clone(),
                message: format!("case name {:?} already used at {first}", case.spec.name),
            });
        }
    }
    Ok(())
}

fn validate(case: &CaseSpec) -> Result<(), String> {
    let name_ok = !case.name.is_empty()
        && case
            .name
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !name_ok {
        return Err(format!(
            "case name {:?} must be dotted words of letters, digits and '-'",
            case.name
        ));
    }
    if case.profiles.is_empty() {
        return Err(format!("case {}: `profiles` is empty", case.name));
    }
    if case.steps.is_empty() {
        return Err(format!("case {}: no steps", case.name));
    }
    Ok(())
}

/// Checks every client's `node`: below [`MAX_NODES`], and other than 0 only
/// in a `cluster` case; the error's location is the offending value.
fn validate_nodes(case: &CaseSpec) -> Result<(), (serde_saphyr::Location, String)> {
    for (name, client) in &case.clients {
        let Some(node) = &client.node else { continue };
        if node.value >= MAX_NODES {
            return Err((
                node.referenced,
                format!(
                    "case {}: client {name:?} names node {}; nodes are 0 to {}",
                    case.name,
                    node.value,
                    MAX_NODES - 1
                ),
            ));
        }
        if node.value > 0 && case.category != Category::Cluster {
            return Err((
                node.referenced,
                format!(
                    "case {}: client {name:?} names node {}, but only `category: cluster` cases use several nodes",
                    case.name, node.value
                ),
            ));
        }
    }
    Ok(())
}

/// The highest node a case's clients name, and where, when one names a node
/// other than 0.
pub(crate) fn highest_node(case: &CaseSpec) -> Option<(u32, serde_saphyr::Location)> {
    case.clients
        .values()
        .filter_map(|c| c.node.as_ref())
        .filter(|n| n.value > 0)
        .max_by_key(|n| n.value)
        .map(|n| (n.value, n.referenced))
}

fn validate_repeat(repeat: Option<u32>) -> Result<(), String> {
    match repeat {
        Some(0) => Err("repeat must be at least 1".into()),
        Some(n) if n > MAX_REPEAT => Err(format!("repeat {n} is over the limit of {MAX_REPEAT}")),
        _ => Ok(()),
    }
}

fn validate_step(case: &CaseSpec, step: &Step) -> Result<(), String> {
    let client = |name: &str| {
        if case.clients.contains_key(name) {
            Ok(())
        } else {
            Err(format!(
                "case {}: unknown client {name:?} (declare it under `clients`)",
                case.name
            ))
        }
    };
    match step {
        Step::Connect(c) | Step::Disconnect(c) => client(c),
        Step::Emit(e) => {
            client(&e.client)?;
            validate_repeat(e.repeat)
        }
        Step::Raw(r) => client(&r.client),
        Step::Http(h) if h.method != "GET" && h.method != "POST" => Err(format!(
            "http method must be GET or POST, not {:?}",
            h.method
        )),
        Step::Http(_) => Ok(()),
        Step::Wait(d) => crate::scenario::parse_duration(d)
            .map(drop)
            .map_err(|e| e.to_string()),
        Step::Expect(e) => {
            client(&e.client)?;
            let kinds = [
                e.event.is_some(),
                e.ack,
                e.connect_error.is_some(),
                e.closed.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                return Err(
                    "expect needs exactly one of `event`, `ack`, `connect_error`, `closed`".into(),
                );
            }
            if let Some(t) = &e.timeout {
                crate::scenario::parse_duration(t).map_err(|e| e.to_string())?;
            }
            if e.repeat.is_some() && e.event.is_none() {
                return Err("repeat is for `expect` of an `event`".into());
            }
            validate_repeat(e.repeat)
        }
        Step::ExpectNone(e) => {
            client(&e.client)?;
            if let Some(t) = &e.within {
                crate::scenario::parse_duration(t).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
    }
}

/// Whether `name` matches the glob `pattern` (`*` any run of characters, `?` one).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Classic two-pointer matching with backtracking to the last `*`.
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_dotted_names() {
        assert!(glob_match("seed.auth.*", "seed.auth.no-token"));
        assert!(!glob_match("seed.auth.*", "seed.events.join"));
        assert!(glob_match("*.join*", "seed.events.join-broadcasts"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn builtin_files_load() {
        let cases = load_builtin_files().expect("the shipped cases are valid");
        assert!(cases.len() > 30, "{}", cases.len());
    }

    #[test]
    fn bad_yaml_points_at_line_and_column() {
        let text = "cases:\n  - name: a.b\n    profiles: [seed]\n    category: nope\n";
        let err = parse_cases(text, "x.yml").unwrap_err().to_string();
        assert!(err.starts_with("x.yml:4:"), "{err}");
    }

    #[test]
    fn transports_use_the_case_spelling() {
        let case = |transport: &str| {
            let text = format!("cases:\n  - name: a.b\n    profiles: [seed]\n    category: events\n    statement: s\n    clients: {{a: {{transport: {transport}}}, b: {{}}}}\n    steps:\n      - connect: a\n");
            parse_cases(&text, "x.yml").map(|c| c[0].spec.clients.clone())
        };
        let clients = case("upgrade").expect("valid");
        assert_eq!(clients["a"].transport, Transport::PollingUpgrade);
        assert_eq!(clients["b"].transport, Transport::Websocket);
        assert_eq!(
            case("polling").expect("valid")["a"].transport,
            Transport::Polling
        );
        let err = case("polling-upgrade").unwrap_err().to_string();
        assert_eq!(
            err,
            "x.yml:6:30: unknown variant `polling-upgrade`, expected one of websocket, polling, upgrade"
        );
    }

    #[test]
    fn a_duplicate_name_points_at_both_cases() {
        let text = "cases:\n  - name: a.b\n    profiles: [seed]\n    category: events\n    statement: s\n    steps:\n      - wait: 1s\n";
        let mut cases = parse_cases(text, "a.yml").expect("valid");
        cases.extend(parse_cases(text, "b.yml").expect("valid"));
        let err = check_unique(&cases).unwrap_err().to_string();
        assert_eq!(
            err,
            "b.yml:2:5: case name \"a.b\" already used at a.yml:2:5"
        );
    }

    /// A one-client case of `category` whose client is `{client}`, with `step`.
    fn one_client(category: &str, client: &str, step: &str) -> String {
        format!("cases:\n  - name: a.b\n    profiles: [strict]\n    category: {category}\n    statement: s\n    clients: {{a: {client}}}\n    steps:\n      - {step}\n")
    }

    #[test]
    fn nodes_are_bounded_and_for_cluster_cases_only() {
        let text = one_client("cluster", "{node: 3}", "connect: a");
        let cases = parse_cases(&text, "x.yml").expect("valid");
        assert_eq!(cases[0].spec.clients["a"].node_index(), 3);
        let (node, at) = highest_node(&cases[0].spec).expect("a node above 0");
        assert_eq!((node, at.line(), at.column()), (3, 6, 25));
        let text = one_client("cluster", "{node: 0}", "connect: a");
        assert!(highest_node(&parse_cases(&text, "x.yml").expect("valid")[0].spec).is_none());

        let err = parse_cases(&one_client("cluster", "{node: 16}", "connect: a"), "x.yml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("x.yml:6:25: "), "{err}");
        assert!(err.contains("nodes are 0 to 15"), "{err}");
        let err = parse_cases(&one_client("events", "{node: 1}", "connect: a"), "x.yml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("x.yml:6:25: "), "{err}");
        assert!(err.contains("only `category: cluster`"), "{err}");
    }

    #[test]
    fn repeats_are_bounded() {
        let emit = |n: u32| format!("emit: {{client: a, event: x, repeat: {n}}}");
        assert!(parse_cases(&one_client("events", "{}", &emit(1000)), "x.yml").is_ok());
        for n in [0, 1001] {
            let err = parse_cases(&one_client("events", "{}", &emit(n)), "x.yml")
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("x.yml:8:9: repeat"), "{err}");
        }
        let expect = "expect: {client: a, event: x, repeat: 5000}";
        let err = parse_cases(&one_client("events", "{}", expect), "x.yml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("over the limit of 1000"), "{err}");
        let ack = "expect: {client: a, ack: true, repeat: 2}";
        assert!(parse_cases(&one_client("events", "{}", ack), "x.yml").is_err());
    }

    #[test]
    fn unknown_client_is_located_at_its_step() {
        let text = "cases:\n  - name: a.b\n    profiles: [seed]\n    category: events\n    statement: s\n    clients: {a: {}}\n    steps:\n      - connect: a\n      - connect: b\n";
        let err = parse_cases(text, "x.yml").unwrap_err().to_string();
        assert!(err.starts_with("x.yml:9:"), "{err}");
        assert!(err.contains("unknown client \"b\""), "{err}");
    }
}
