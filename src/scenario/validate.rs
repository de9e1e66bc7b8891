//! Semantic checks on a typed scenario, each failure pointing at the YAML node
//! it is about.

use std::collections::HashSet;

use super::model::{Group, Phase, Reconnect, Scenario, Step, CONNECT_ERROR_EVENT};
use super::template::{JsonTemplate, Template};
use super::tree::{Node, PathSeg, Pos};
use super::units::MAX_DURATION;

/// The most clients one scenario may start (every phase together, and any
/// one group's `count` or phase's `max`): 10,000,000, so that virtual-user
/// numbers fit in 32 bits with room to spare.
pub const MAX_CLIENTS: u64 = 10_000_000;

/// The most nodes one `target` list may name (per-node metrics are
/// registered for each, and a node's index fits in a byte).
pub const MAX_TARGETS: usize = 16;

/// The largest group `weight` (weights are relative; a bound keeps their
/// sum finite).
const MAX_WEIGHT: f64 = 1_000_000.0;

/// Names every template may use, whatever the scope.
const BUILTINS: &str = "vu, seq, uuid, now, random(…), randint(…)";

/// What is wrong with a `reconnect` block: the field and the message.
fn check_reconnect(r: &Reconnect) -> Result<(), (&'static str, String)> {
    if r.attempts > Reconnect::MAX_ATTEMPTS {
        return Err((
            "attempts",
            format!(
                "attempts {} is over the limit of {}",
                r.attempts,
                Reconnect::MAX_ATTEMPTS
            ),
        ));
    }
    if !(0.0..=1.0).contains(&r.jitter) {
        return Err((
            "jitter",
            format!("jitter {} must be between 0 and 1", r.jitter),
        ));
    }
    if r.max_delay < r.delay {
        return Err((
            "max_delay",
            format!(
                "max_delay {:?} is shorter than delay {:?}",
                r.max_delay, r.delay
            ),
        ));
    }
    Ok(())
}

/// A validation failure: a message and where it belongs.
pub(crate) struct Invalid {
    pub pos: Pos,
    pub message: String,
}

/// Checks `scenario`; `root` is the tree it was typed from (for positions).
pub(crate) fn validate(scenario: &Scenario, root: &Node) -> Result<(), Invalid> {
    let fail = |path: &[PathSeg<'_>], message: String| Invalid {
        pos: root.pos_of(path),
        message,
    };
    use PathSeg::{Index, Key};

    if scenario.target.len() > MAX_TARGETS {
        return Err(fail(
            &[Key("target")],
            format!(
                "at most {MAX_TARGETS} targets, not {}",
                scenario.target.len()
            ),
        ));
    }
    for (i, target) in scenario.target.iter().enumerate() {
        let ok = ["http://", "https://", "ws://", "wss://"]
            .iter()
            .any(|s| target.starts_with(s));
        if !ok {
            let at: &[PathSeg<'_>] = if scenario.target.len() == 1 {
                &[Key("target")]
            } else {
                &[Key("target"), Index(i)]
            };
            return Err(fail(
                at,
                format!("target `{target}` must start with http://, https://, ws:// or wss://"),
            ));
        }
    }
    if let Some(weights) = &scenario.weights {
        if weights.len() != scenario.target.len() {
            return Err(fail(
                &[Key("weights")],
                format!(
                    "weights has {} entries for {} targets: give one per target",
                    weights.len(),
                    scenario.target.len()
                ),
            ));
        }
        if let Some(i) = weights
            .iter()
            .position(|w| !(w.is_finite() && *w >= 0.0 && *w <= MAX_WEIGHT))
        {
            return Err(fail(
                &[Key("weights"), Index(i)],
                format!(
                    "a weight is a number from 0 to {MAX_WEIGHT}, not {}",
                    weights[i]
                ),
            ));
        }
        if weights.iter().all(|w| *w == 0.0) {
            return Err(fail(
                &[Key("weights")],
                "at least one weight must be above 0".into(),
            ));
        }
    }
    for (field, value) in [
        ("path", &scenario.socketio.path),
        ("namespace", &scenario.socketio.namespace),
    ] {
        if !value.starts_with('/') {
            return Err(fail(
                &[Key("socketio"), Key(field)],
                format!("{field} `{value}` must start with `/`"),
            ));
        }
    }

    // Template scopes: vars see earlier vars; claims see all vars; the
    // handshake and flows also see `token` (when there is auth) and captures.
    let mut scope: Vec<&str> = Vec::new();
    if let Some(spread) = &scenario.rooms {
        if let Some((field, message)) = spread.problem() {
            return Err(fail(&[Key("rooms"), Key(field)], message));
        }
        scope.extend(spread.vars.iter().map(String::as_str));
    }
    for (name, template) in &scenario.vars {
        check_names(template, &scope)?;
        scope.push(name);
    }
    if let Some(auth) = &scenario.auth {
        match (&auth.jwt, &auth.csv) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(fail(
                    &[Key("auth")],
                    "auth needs exactly one of `jwt` or `csv`".into(),
                ))
            }
            (Some(jwt), None) => {
                if !matches!(jwt.claims, JsonTemplate::Object(_)) {
                    return Err(fail(
                        &[Key("auth"), Key("jwt"), Key("claims")],
                        "claims must be a mapping".into(),
                    ));
                }
                check_json(&jwt.claims, &scope)?;
            }
            (None, Some(_)) => {}
        }
        scope.push("token");
    }
    let sio = &scenario.socketio;
    for (_, template) in sio.query.iter().chain(&sio.headers) {
        check_names(template, &scope)?;
    }
    if let Some(auth) = &sio.auth {
        check_json(auth, &scope)?;
    }
    if sio.version == chorus_protocol::Version::V2 {
        const NO_AUTH: &str =
            "socket.io 2.x has no CONNECT auth payload: send the token in the query or a header";
        if sio.auth.is_some() {
            return Err(fail(&[Key("socketio"), Key("auth")], NO_AUTH.into()));
        }
        if scenario
            .auth
            .as_ref()
            .is_some_and(|a| a.place == super::model::TokenPlace::Auth)
        {
            return Err(fail(&[Key("auth"), Key("place")], NO_AUTH.into()));
        }
    }

    if let Some(r) = &scenario.reconnect {
        check_reconnect(r).map_err(|(field, m)| fail(&[Key("reconnect"), Key(field)], m))?;
    }

    if scenario.groups.is_empty() {
        return Err(fail(
            &[Key("groups")],
            "at least one group is needed".into(),
        ));
    }
    let mut names = HashSet::new();
    let mut total_weight = 0.0;
    for (i, group) in scenario.groups.iter().enumerate() {
        let at = [Key("groups"), Index(i)];
        if group.name.trim().is_empty() || !names.insert(group.name.as_str()) {
            return Err(fail(
                &[Key("groups"), Index(i), Key("name")],
                format!("group name `{}` is empty or used twice", group.name),
            ));
        }
        if let Some(r) = &group.reconnect {
            check_reconnect(r).map_err(|(field, m)| {
                fail(&[Key("groups"), Index(i), Key("reconnect"), Key(field)], m)
            })?;
        }
        total_weight += check_share(group)
            .map_err(|(field, m)| fail(&[Key("groups"), Index(i), Key(field)], m))?;
        if group.flow.is_empty() {
            return Err(fail(
                &[Key("groups"), Index(i), Key("flow")],
                "the flow is empty".into(),
            ));
        }
        let mut flow_scope = scope.clone();
        let mut path = at.to_vec();
        path.push(Key("flow"));
        check_flow(&group.flow, false, &mut path, &mut flow_scope, root)?;
    }
    let only_weights = scenario.groups.iter().all(|g| g.count.is_none());
    if only_weights && total_weight <= 0.0 {
        return Err(fail(&[Key("groups")], "group weights sum to 0".into()));
    }

    if scenario.load.phases.is_empty() {
        return Err(fail(
            &[Key("load"), Key("phases")],
            "at least one phase is needed".into(),
        ));
    }
    // Clients the phases start in all: every VU number must fit, and no
    // phase may start none.
    let mut level = 0u64;
    let mut started = 0u64;
    for (i, phase) in scenario.load.phases.iter().enumerate() {
        let at = |field: &'static str| [Key("load"), Key("phases"), Index(i), Key(field)];
        let arrive_at = |field: &'static str| {
            [
                Key("load"),
                Key("phases"),
                Index(i),
                Key("arrive"),
                Key(field),
            ]
        };
        match phase {
            Phase::Arrive { max: Some(0), .. } => {
                return Err(fail(
                    &arrive_at("max"),
                    "max must be greater than zero".into(),
                ));
            }
            Phase::Arrive { max: Some(m), .. } if *m > MAX_CLIENTS => {
                return Err(fail(
                    &arrive_at("max"),
                    format!("max {m} is over the limit of {MAX_CLIENTS} clients"),
                ));
            }
            Phase::Arrive { rate, duration, .. } if phase.arrivals() == 0 => {
                return Err(fail(
                    &arrive_at("rate"),
                    format!(
                        "rate {rate}/s for {:?} starts no client (rate × duration is under 1)",
                        duration
                    ),
                ));
            }
            Phase::Arrive { .. } => started = started.saturating_add(phase.arrivals()),
            Phase::Ramp { to, .. } if *to > MAX_CLIENTS => {
                return Err(fail(
                    &[Key("load"), Key("phases"), Index(i), Key("ramp"), Key("to")],
                    format!("ramp to {to} is over the limit of {MAX_CLIENTS} clients"),
                ));
            }
            Phase::Ramp { to, .. } => {
                started = started.saturating_add(to.saturating_sub(level));
                level = *to;
            }
            Phase::Hold(_) => {}
        }
        if started > MAX_CLIENTS {
            return Err(fail(
                &at(match phase {
                    Phase::Arrive { .. } => "arrive",
                    _ => "ramp",
                }),
                format!(
                    "the phases up to this one start {started} clients, over the limit of {MAX_CLIENTS}"
                ),
            ));
        }
    }
    for (i, group) in scenario.groups.iter().enumerate() {
        if group.count.is_some_and(|c| c > MAX_CLIENTS) {
            return Err(fail(
                &[Key("groups"), Index(i), Key("count")],
                format!("count is over the limit of {MAX_CLIENTS} clients"),
            ));
        }
    }
    let total = scenario
        .load
        .phases
        .iter()
        .map(Phase::duration)
        .try_fold(std::time::Duration::ZERO, std::time::Duration::checked_add);
    if total.is_none_or(|t| t > MAX_DURATION) {
        return Err(fail(
            &[Key("load"), Key("phases")],
            "the phases last more than 366 days together".into(),
        ));
    }
    Ok(())
}

/// Returns the group's weight (0 for counted groups), or the faulty field.
fn check_share(group: &Group) -> Result<f64, (&'static str, String)> {
    match (group.weight, group.count) {
        (Some(_), Some(_)) => Err(("count", "give either `weight` or `count`, not both".into())),
        (_, Some(0)) => Err(("count", "count must be greater than zero".into())),
        (_, Some(_)) => Ok(0.0),
        (Some(w), None) if !(w.is_finite() && (0.0..=MAX_WEIGHT).contains(&w)) => Err((
            "weight",
            if w.abs() < 1e9 {
                format!("weight {w} must be a number from 0 to {MAX_WEIGHT}")
            } else {
                format!("weight {w:e} must be a number from 0 to {MAX_WEIGHT}")
            },
        )),
        (w, None) => Ok(w.unwrap_or(1.0)),
    }
}

fn check_flow<'a>(
    steps: &'a [Step],
    mut connected: bool,
    path: &mut Vec<PathSeg<'a>>,
    scope: &mut Vec<&'a str>,
    root: &Node,
) -> Result<bool, Invalid> {
    for (j, step) in steps.iter().enumerate() {
        path.push(PathSeg::Index(j));
        let fail = |message: String| Invalid {
            pos: root.pos_of(path),
            message,
        };
        let needs_connection = |what: &str| {
            if connected {
                Ok(())
            } else {
                Err(fail(format!("`{what}` must follow a `connect`")))
            }
        };
        match step {
            Step::Connect if connected => return Err(fail("already connected".into())),
            Step::Connect => connected = true,
            Step::Disconnect => {
                needs_connection("disconnect")?;
                connected = false;
            }
            Step::Emit(emit) => {
                needs_connection("emit")?;
                if emit.event.is_empty() {
                    return Err(fail("empty event name".into()));
                }
                if let Some(data) = &emit.data {
                    check_json(data, scope)?;
                }
                if let Some(room) = &emit.room {
                    check_names(room, scope)?;
                }
            }
            Step::JoinRoom(room) | Step::LeaveRoom(room) => {
                needs_connection(if matches!(step, Step::JoinRoom(_)) {
                    "join_room"
                } else {
                    "leave_room"
                })?;
                check_names(room, scope)?;
            }
            Step::Expect(expect) if expect.event == CONNECT_ERROR_EVENT => {
                if j == 0 || !matches!(steps[j - 1], Step::Connect) {
                    return Err(fail(format!(
                        "`expect: {{ event: {CONNECT_ERROR_EVENT} }}` must come right after a `connect`"
                    )));
                }
                if let Some(m) = &expect.matches {
                    check_json(m, scope)?;
                }
                scope.extend(expect.capture.iter().map(|c| c.var.as_str()));
                // The connect is meant to be refused: the flow goes on unconnected.
                connected = false;
            }
            Step::Expect(expect) => {
                needs_connection("expect")?;
                if expect.event.is_empty() {
                    return Err(fail("empty event name".into()));
                }
                if let Some(m) = &expect.matches {
                    check_json(m, scope)?;
                }
                scope.extend(expect.capture.iter().map(|c| c.var.as_str()));
            }
            Step::Listen(_) => needs_connection("listen")?,
            Step::Think(_) => {}
            Step::Loop(body) => {
                if body.duration.is_none() && body.count.is_none() {
                    return Err(fail("a loop needs `duration`, `count` or both".into()));
                }
                if body.count == Some(0) {
                    return Err(fail("loop count must be greater than zero".into()));
                }
                if body.steps.is_empty() {
                    return Err(fail("the loop has no steps".into()));
                }
                path.extend([PathSeg::Key("loop"), PathSeg::Key("steps")]);
                let after = check_flow(&body.steps, connected, path, scope, root)?;
                path.truncate(path.len() - 2);
                if after != connected {
                    return Err(Invalid {
                        pos: root.pos_of(path),
                        message: "a loop body must end connected as it started".into(),
                    });
                }
            }
        }
        path.pop();
    }
    Ok(connected)
}

fn check_json(value: &JsonTemplate, scope: &[&str]) -> Result<(), Invalid> {
    value
        .templates()
        .into_iter()
        .try_for_each(|t| check_names(t, scope))
}

fn check_names(template: &Template, scope: &[&str]) -> Result<(), Invalid> {
    match template.names().find(|n| !scope.contains(n)) {
        None => Ok(()),
        Some(name) => {
            let mut known = BUILTINS.to_owned();
            for s in scope {
                known.push_str(", ");
                known.push_str(s);
            }
            let hint = if name == "token" {
                " (`token` needs an `auth` section)"
            } else {
                ""
            };
            Err(Invalid {
                pos: template.pos(),
                message: format!("unknown template variable `{name}`{hint}, known here: {known}"),
            })
        }
    }
}
