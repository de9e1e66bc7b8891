//! The generic case runner: plays a case's steps with real clients and
//! compares what arrives with what the case expects.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::Notify;

use super::case::{CaseSpec, ClientSpec, CloseExpect, ExpectNoneStep, ExpectStep, Step};
use super::http::http_exchange;
use super::matcher::{appears_in, expand, expand_value, matches_exact, matches_subset, with_index};
use super::tokens::TokenKind;
use super::Target;
use crate::client::{Client, ClientConfig, ClientError, CloseReason, Handler, Incoming, Transport};

/// How long an `expect` waits unless told otherwise.
const EXPECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an `expect-none` watches unless told otherwise.
const QUIET_WINDOW: Duration = Duration::from_millis(500);
/// The bound on one client's connect sequence.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most received items an evidence block lists.
const EVIDENCE_ITEMS: usize = 12;
/// The most characters of one received item an evidence block shows.
const EVIDENCE_WIDTH: usize = 300;

/// One thing a case client received.
#[derive(Debug, Clone)]
enum Item {
    Event { name: String, args: Value },
    Ack { id: u64, args: Value },
    Closed(CloseReason),
}

#[derive(Debug)]
struct Received {
    at: Instant,
    item: Item,
}

/// Everything a client received, in order, and a wake-up for waiters.
#[derive(Debug, Default)]
struct Transcript {
    items: Mutex<Vec<Received>>,
    notify: Notify,
}

impl Transcript {
    fn push(&self, at: Instant, item: Item) {
        self.items
            .lock()
            .expect("transcript")
            .push(Received { at, item });
        self.notify.notify_waiters();
    }

    /// The index of the first item from `from` on that `pred` accepts.
    fn find(&self, from: usize, pred: impl Fn(&Item) -> bool) -> Option<usize> {
        let items = self.items.lock().expect("transcript");
        items
            .iter()
            .skip(from)
            .position(|r| pred(&r.item))
            .map(|i| i + from)
    }

    /// [`Transcript::find`], or, when nothing matches, whether the session
    /// is over: both under one lock, so that a close pushed between the two
    /// looks cannot be taken for a session that ended without a match.
    fn find_or_closed(&self, from: usize, pred: impl Fn(&Item) -> bool) -> Result<usize, bool> {
        let items = self.items.lock().expect("transcript");
        match items.iter().skip(from).position(|r| pred(&r.item)) {
            Some(i) => Ok(i + from),
            None => Err(items.iter().any(|r| matches!(r.item, Item::Closed(_)))),
        }
    }

    /// Waits until `pred` accepts an item from `from` on; `None` at `deadline`
    /// or once the session is over without one.
    async fn wait_for(
        &self,
        from: usize,
        deadline: tokio::time::Instant,
        pred: impl Fn(&Item) -> bool,
    ) -> Option<usize> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.find_or_closed(from, &pred) {
                Ok(i) => return Some(i),
                Err(true) => return None,
                Err(false) => {}
            }
            tokio::time::timeout_at(deadline, notified).await.ok()?;
        }
    }
}

/// The [`Handler`] of a case client: writes everything into its transcript.
struct TranscriptHandler(Arc<Transcript>);

fn args_value(args: &[&RawValue]) -> Value {
    Value::Array(
        args.iter()
            .map(|r| serde_json::from_str(r.get()).unwrap_or(Value::Null))
            .collect(),
    )
}

impl Handler for TranscriptHandler {
    fn on_message(&mut self, at: Instant, message: Incoming<'_>) {
        let item = match message {
            Incoming::Event { name, args, .. } => Item::Event {
                name: name.to_owned(),
                args: args_value(args),
            },
            Incoming::Ack { id, args } => Item::Ack {
                id,
                args: args_value(args),
            },
        };
        self.0.push(at, item);
    }

    fn on_closed(&mut self, at: Instant, reason: CloseReason) {
        self.0.push(at, Item::Closed(reason));
    }
}

/// A case client's state.
#[derive(Default)]
struct CaseClient {
    spec: ClientSpec,
    client: Option<Client>,
    transcript: Option<Arc<Transcript>>,
    refused: Option<String>,
    /// Events and the close before this index were consumed by earlier `expect` steps.
    cursor: usize,
    /// The same for ACKs, which are not ordered with events.
    ack_cursor: usize,
    last_ack: Option<u64>,
}

/// One case being played.
struct Play<'a> {
    target: &'a Target,
    tag: &'a str,
    start: Instant,
    clients: BTreeMap<String, CaseClient>,
    sids: HashMap<String, String>,
}

/// Plays `case` against `target`; `Err` holds the failure's evidence.
pub(crate) async fn run_case(case: &CaseSpec, target: &Target, tag: &str) -> Result<(), String> {
    let mut play = Play {
        target,
        tag,
        start: Instant::now(),
        clients: case
            .clients
            .iter()
            .map(|(name, spec)| {
                let client = CaseClient {
                    spec: spec.clone(),
                    ..CaseClient::default()
                };
                (name.clone(), client)
            })
            .collect(),
        sids: HashMap::new(),
    };
    for (i, step) in case.steps.iter().enumerate() {
        play.step(&step.value).await.map_err(|evidence| {
            format!(
                "step {}/{} (line {}): {evidence}",
                i + 1,
                case.steps.len(),
                step.referenced.line()
            )
        })?;
    }
    Ok(())
}

impl Play<'_> {
    fn client(&mut self, name: &str) -> &mut CaseClient {
        self.clients.get_mut(name).expect("validated client name")
    }

    async fn step(&mut self, step: &Step) -> Result<(), String> {
        match step {
            Step::Connect(name) => self.connect(name).await,
            Step::Emit(e) => {
                let expanded: Vec<Value> =
                    e.args.iter().map(|a| expand_value(a, self.tag)).collect();
                let indexed = serde_json::to_string(&expanded).is_ok_and(|t| t.contains("{{i}}"));
                let render = |i: u32| -> Vec<String> {
                    expanded
                        .iter()
                        .map(|a| {
                            if indexed {
                                with_index(a, i).to_string()
                            } else {
                                a.to_string()
                            }
                        })
                        .collect()
                };
                let mut args = render(0);
                let c = self.client(&e.client);
                let client = c
                    .client
                    .as_ref()
                    .ok_or_else(|| not_connected(&e.client, c))?;
                for i in 0..e.repeat.unwrap_or(1) {
                    if indexed && i > 0 {
                        args = render(i);
                    }
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    if e.ack {
                        let sent = client.emit_with_ack(&e.event, &args).await;
                        c.last_ack = Some(sent.map_err(|err| send_failed(&e.client, &err))?.id);
                    } else {
                        client
                            .emit(&e.event, &args)
                            .await
                            .map_err(|err| send_failed(&e.client, &err))?;
                    }
                }
                Ok(())
            }
            Step::Raw(r) => {
                let text = expand(&r.text, self.tag);
                let c = self.client(&r.client);
                let client = c
                    .client
                    .as_ref()
                    .ok_or_else(|| not_connected(&r.client, c))?;
                // The server may close while reading a bad packet; what it did
                // is checked by the following steps, not by this write.
                let _ = client.send_raw(&text).await;
                Ok(())
            }
            Step::Http(h) => {
                let body = expand(&h.body, self.tag);
                let response = http_exchange(
                    &self.target.authority,
                    &h.method,
                    &h.target,
                    &[],
                    body.as_bytes(),
                )
                .await
                .map_err(|e| format!("{} {}: {e}", h.method, h.target))?;
                if response.status == h.status {
                    Ok(())
                } else {
                    Err(format!(
                        "expected: HTTP {} for {} {}\ngot: HTTP {} {}",
                        h.status,
                        h.method,
                        h.target,
                        response.status,
                        truncate(&String::from_utf8_lossy(&response.body))
                    ))
                }
            }
            Step::Wait(d) => {
                tokio::time::sleep(crate::scenario::parse_duration(d).unwrap_or_default()).await;
                Ok(())
            }
            Step::Expect(e) => self.expect(e).await,
            Step::ExpectNone(e) => self.expect_none(e).await,
            Step::Disconnect(name) => {
                let c = self.client(name);
                let client = c.client.take().ok_or_else(|| not_connected(name, c))?;
                client
                    .disconnect()
                    .await
                    .map_err(|e| format!("disconnect {name}: {e}"))
            }
        }
    }

    async fn connect(&mut self, name: &str) -> Result<(), String> {
        let config = self.client_config(name)?;
        let transcript = Arc::new(Transcript::default());
        let result = Client::connect(&config, TranscriptHandler(transcript.clone())).await;
        let c = self.client(name);
        match result {
            Ok((client, _)) => {
                let sid = client.sid().to_owned();
                c.client = Some(client);
                c.transcript = Some(transcript);
                self.sids.insert(name.to_owned(), sid);
                Ok(())
            }
            Err(ClientError::ConnectRefused { data, .. }) => {
                c.refused = Some(data);
                Ok(())
            }
            Err(e) => Err(format!("connect {name}: {e}")),
        }
    }

    fn client_config(&self, name: &str) -> Result<ClientConfig, String> {
        let spec = &self.clients[name].spec;
        let mint = |kind| {
            self.target
                .mint
                .mint(kind, &format!("{name}-{}", self.tag))
                .map_err(|e| e.to_string())
        };
        let node = spec.node_index();
        let url = self.target.nodes.get(node).ok_or_else(|| {
            format!(
                "client {name} names node {node}, but {} targets were given",
                self.target.nodes.len()
            )
        })?;
        let mut config = ClientConfig::new(url.clone())
            .namespace(spec.namespace.as_deref().unwrap_or("/chat"))
            .transport(spec.transport)
            .version(self.target.version);
        config.connect_timeout = CONNECT_TIMEOUT;
        config.tls = self.target.authority.tls.clone();
        let no_token_field = spec.query.is_none()
            && spec.header.is_none()
            && spec.authorization.is_none()
            && spec.auth.is_none();
        let query = match &spec.query {
            Some(kinds) => kinds.clone(),
            None if no_token_field => vec![TokenKind::Valid],
            None => Vec::new(),
        };
        for kind in query {
            if let Some(token) = mint(kind)? {
                config = config.query("token", token);
            }
        }
        if let Some(kind) = spec.header {
            if let Some(token) = mint(kind)? {
                config = config.header("Authorization", format!("Bearer {token}"));
            }
        }
        if let Some(raw) = &spec.authorization {
            config = config.header("Authorization", self.expand_tokens(raw, &mint)?);
        }
        if let Some(kind) = spec.auth {
            if let Some(token) = mint(kind)? {
                config = config.auth(serde_json::json!({ "token": token }).to_string());
            }
        }
        Ok(config)
    }

    /// Replaces each `{{token:KIND}}` of `raw` by a token of that kind.
    fn expand_tokens(
        &self,
        raw: &str,
        mint: &impl Fn(TokenKind) -> Result<Option<String>, String>,
    ) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = raw;
        while let Some(start) = rest.find("{{token:") {
            let len = rest[start..]
                .find("}}")
                .ok_or_else(|| format!("unclosed {{{{token:…}}}} in {raw:?}"))?;
            let kind: TokenKind =
                serde_json::from_value(Value::String(rest[start + 8..start + len].trim().into()))
                    .map_err(|e| format!("{raw:?}: {e}"))?;
            out.push_str(&rest[..start]);
            out.push_str(&mint(kind)?.unwrap_or_default());
            rest = &rest[start + len + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    async fn expect(&mut self, e: &ExpectStep) -> Result<(), String> {
        let Some(n) = e.repeat else {
            return self.expect_at(e, 0).await;
        };
        for i in 0..n {
            self.expect_at(e, i)
                .await
                .map_err(|evidence| format!("(repetition {i} of {n}) {evidence}"))?;
        }
        Ok(())
    }

    /// One `expect`, with `{{i}}` standing for `index`.
    async fn expect_at(&mut self, e: &ExpectStep, index: u32) -> Result<(), String> {
        let timeout = e
            .timeout
            .as_deref()
            .and_then(|t| crate::scenario::parse_duration(t).ok())
            .unwrap_or(EXPECT_TIMEOUT);
        let template = |v: &Value| with_index(&expand_value(v, self.tag), index);
        let expected_args = e.args.as_ref().map(|a| template(&Value::Array(a.clone())));
        let contains = e
            .contains
            .as_ref()
            .map(|a| template(&Value::Array(a.clone())));
        let excludes = e.excludes.as_ref().map(template);
        let sids = self.sids.clone();
        let args_ok = |args: &Value| {
            expected_args
                .as_ref()
                .is_none_or(|x| matches_exact(x, args, &sids))
                && contains
                    .as_ref()
                    .is_none_or(|x| matches_subset(x, args, &sids))
                && excludes
                    .as_ref()
                    .is_none_or(|x| !appears_in(x, args, &sids))
        };
        let mut wanted = String::new();
        if let Some(x) = &expected_args {
            let _ = write!(wanted, " with arguments exactly {x}");
        }
        if let Some(x) = &contains {
            let _ = write!(wanted, " with arguments containing {x}");
        }
        if let Some(x) = &excludes {
            let _ = write!(wanted, " whose arguments nowhere hold {x}");
        }

        let transport = self.clients[&e.client].spec.transport;
        let c = &self.clients[&e.client];
        if let Some(expected) = &e.connect_error {
            let expected = expand_value(expected, self.tag);
            let want = format!(
                "expected: {} refused with CONNECT_ERROR {expected}",
                e.client
            );
            return match (&c.refused, &c.client) {
                (Some(data), _) => {
                    let got: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                    if matches_exact(&expected, &got, &sids) {
                        Ok(())
                    } else {
                        Err(format!("{want}\ngot: CONNECT_ERROR {data}"))
                    }
                }
                (None, Some(client)) => Err(format!(
                    "{want}\ngot: {} connected with sid {}",
                    e.client,
                    client.sid()
                )),
                (None, None) => Err(format!("{want}\ngot: {} never connected", e.client)),
            };
        }
        let Some(transcript) = c.transcript.clone() else {
            return Err(not_connected(&e.client, c));
        };
        let want_ack = e.ack.then_some(c.last_ack);
        let what = match (&e.event, want_ack, e.closed) {
            (Some(name), _, _) => format!("event {name:?}{wanted}"),
            (None, Some(id), _) => format!("the ACK of its last emit (id {id:?}){wanted}"),
            (None, None, closed) => format!("the server ending the session ({closed:?})"),
        };
        let pred = |item: &Item| match item {
            Item::Event { name, args } => e.event.as_ref() == Some(name) && args_ok(args),
            Item::Ack { id, args } => want_ack == Some(Some(*id)) && args_ok(args),
            Item::Closed(reason) => e
                .closed
                .is_some_and(|x| close_matches(x, transport, reason)),
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let from = if e.ack { c.ack_cursor } else { c.cursor };
        match transcript.wait_for(from, deadline, pred).await {
            Some(i) => {
                let c = self.client(&e.client);
                if e.ack {
                    c.ack_cursor = i + 1;
                } else {
                    c.cursor = i + 1;
                }
                Ok(())
            }
            None => {
                let relevant = |item: &Item| match item {
                    Item::Event { name, .. } => e.event.as_ref() == Some(name),
                    Item::Ack { .. } => e.ack,
                    Item::Closed(_) => true,
                };
                Err(format!(
                    "expected: {} to receive {what} within {timeout:?}\ngot: {}",
                    e.client,
                    self.render_transcript(&e.client, &transcript, from, relevant)
                ))
            }
        }
    }

    async fn expect_none(&mut self, e: &ExpectNoneStep) -> Result<(), String> {
        let window = e
            .within
            .as_deref()
            .and_then(|t| crate::scenario::parse_duration(t).ok())
            .unwrap_or(QUIET_WINDOW);
        let contains = e
            .contains
            .as_ref()
            .map(|a| expand_value(&Value::Array(a.clone()), self.tag));
        let c = &self.clients[&e.client];
        let Some(transcript) = c.transcript.clone() else {
            return Err(not_connected(&e.client, c));
        };
        let from = c.cursor;
        tokio::time::sleep(window).await;
        let sids = &self.sids;
        let counts = |item: &Item| match item {
            Item::Event { name, args } => {
                // `ack: true` alone watches ACKs only.
                let named = match &e.event {
                    Some(n) => n == name,
                    None => !e.ack,
                };
                named
                    && contains
                        .as_ref()
                        .is_none_or(|x| matches_subset(x, args, sids))
            }
            Item::Ack { .. } => e.ack || e.event.is_none(),
            Item::Closed(_) => false,
        };
        match transcript.find(from, counts) {
            None => Ok(()),
            Some(i) => {
                let mut what = e
                    .event
                    .as_deref()
                    .map_or("no event".to_owned(), |n| format!("no {n:?} event"));
                if let Some(x) = &contains {
                    let _ = write!(what, " containing {x}");
                }
                Err(format!(
                    "expected: {} to receive {what} within {window:?}\ngot: {}",
                    e.client,
                    self.render_transcript(&e.client, &transcript, i, |item| counts(item))
                ))
            }
        }
    }

    /// What `name` received from index `from` on that `relevant` accepts, one
    /// line per item, and how many other items arrived.
    fn render_transcript(
        &self,
        name: &str,
        transcript: &Transcript,
        from: usize,
        relevant: impl Fn(&Item) -> bool,
    ) -> String {
        let items = transcript.items.lock().expect("transcript");
        let (shown, others): (Vec<&Received>, Vec<&Received>) =
            items.iter().skip(from).partition(|r| relevant(&r.item));
        let mut out = String::new();
        for r in shown.iter().take(EVIDENCE_ITEMS) {
            let at = r.at.saturating_duration_since(self.start).as_secs_f64();
            let text = match &r.item {
                Item::Event { name, args } => {
                    let mut all = vec![Value::String(name.clone())];
                    all.extend(args.as_array().cloned().unwrap_or_default());
                    format!("event {}", Value::Array(all))
                }
                Item::Ack { id, args } => format!("ack {id} {args}"),
                Item::Closed(reason) => format!("closed: {reason}"),
            };
            let _ = write!(out, "\n  +{at:.3}s {name} {}", truncate(&text));
        }
        if shown.len() > EVIDENCE_ITEMS {
            let _ = write!(out, "\n  … and {} more", shown.len() - EVIDENCE_ITEMS);
        }
        let head = if shown.is_empty() {
            format!("nothing of the kind for {name}")
        } else {
            format!("{name} received:")
        };
        let mut names: Vec<&str> = others
            .iter()
            .filter_map(|r| match &r.item {
                Item::Event { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        let tail = if others.is_empty() {
            String::new()
        } else {
            format!(
                "\n  (and {} other packets: {})",
                others.len(),
                names.join(", ")
            )
        };
        format!("{head}{out}{tail}")
    }
}

fn close_matches(expect: CloseExpect, transport: Transport, reason: &CloseReason) -> bool {
    let server_end = matches!(
        reason,
        CloseReason::ServerClosed { .. } | CloseReason::Transport(_) | CloseReason::Io(_)
    );
    match expect {
        CloseExpect::Any => !matches!(reason, CloseReason::ClientDisconnect),
        CloseExpect::Namespace => matches!(reason, CloseReason::NamespaceDisconnect),
        // Polling has no close codes: any end of the session from the server counts.
        CloseExpect::NoStatus if transport == Transport::Polling => server_end,
        CloseExpect::NoStatus => matches!(reason, CloseReason::ServerClosed { code: None }),
        CloseExpect::TooBig => matches!(reason, CloseReason::ServerClosed { code: Some(1009) }),
    }
}

fn not_connected(name: &str, c: &CaseClient) -> String {
    match &c.refused {
        Some(data) => {
            format!("expected: {name} connected\ngot: {name} was refused with CONNECT_ERROR {data}")
        }
        None => format!("expected: {name} connected\ngot: {name} is not connected"),
    }
}

fn send_failed(name: &str, err: &ClientError) -> String {
    format!("expected: {name} can send\ngot: {err}")
}

/// The first [`EVIDENCE_WIDTH`] characters of `text`.
fn truncate(text: &str) -> String {
    match text.char_indices().nth(EVIDENCE_WIDTH) {
        Some((end, _)) => format!("{}… ({} bytes)", &text[..end], text.len()),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The close that ends a session is what an `expect: closed` waits for:
    /// pushed from another thread while the wait looks, it must be found,
    /// never taken for a session that ended without it (the two looks once
    /// took two locks, and a close pushed between them was missed). A
    /// barrier starts both sides together, round after round.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_close_pushed_while_waiting_for_it_is_found() {
        const ROUNDS: usize = 20_000;
        let is_close = |item: &Item| matches!(item, Item::Closed(_));
        let transcripts: Arc<Vec<Arc<Transcript>>> =
            Arc::new((0..ROUNDS).map(|_| Arc::default()).collect());
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let pusher = {
            let (transcripts, barrier) = (transcripts.clone(), barrier.clone());
            std::thread::spawn(move || {
                for transcript in transcripts.iter() {
                    barrier.wait();
                    transcript.push(
                        Instant::now(),
                        Item::Closed(CloseReason::ServerClosed { code: Some(1009) }),
                    );
                }
            })
        };
        for (round, transcript) in transcripts.iter().enumerate() {
            barrier.wait();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            let found = transcript.wait_for(0, deadline, is_close).await;
            assert_eq!(found, Some(0), "round {round}");
        }
        pusher.join().expect("pusher");
    }

    #[test]
    fn a_session_over_without_a_match_ends_the_wait() {
        let transcript = Transcript::default();
        transcript.push(
            Instant::now(),
            Item::Closed(CloseReason::ServerClosed { code: None }),
        );
        let never = |_: &Item| false;
        assert_eq!(transcript.find_or_closed(0, never), Err(true));
        assert_eq!(Transcript::default().find_or_closed(0, never), Err(false));
        assert_eq!(
            transcript.find_or_closed(0, |i: &Item| matches!(i, Item::Closed(_))),
            Ok(0)
        );
    }
}
