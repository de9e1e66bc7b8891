//! The YAML scenario language: loading, `--set` overrides, validation,
//! templates, thresholds and tokens.
//!
//! ```no_run
//! use chorus::scenario::{Override, Scenario};
//! let overrides = [Override::parse("load.phases.0.ramp.to=50").unwrap()];
//! let scenario = Scenario::load_with_overrides("scenarios/smoke.yml", &overrides).unwrap();
//! println!("{} groups", scenario.groups.len());
//! ```
//!
//! Every error names the file (or the `--set` key), line and column of the
//! offending value. The language reference is the README's "The scenario language".

mod error;
mod model;
pub mod rooms;
mod template;
mod threshold;
mod token;
mod tree;
mod units;
mod validate;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use serde::Deserialize;

pub use error::{Location, ScenarioError};
pub use model::{
    Arrival, AuthConfig, Capture, CsvConfig, Emit, Expect, Group, GroupPicker, JwtAlgorithm,
    JwtConfig, LoadConfig, Loop, MessageSchedule, Phase, Reconnect, Scenario, SocketIoConfig, Step,
    Think, TokenPlace, CONNECT_ERROR_EVENT, DEFAULT_TIMEOUT,
};
pub use template::{json_contains, JsonTemplate, Template, VuState};
pub use threshold::{CmpOp, Stat, Threshold, ValueUnit};
pub use token::{read_csv_tokens, JwtMinter, TokenSource};
pub use units::{parse_duration, parse_rate};

use crate::client::{Tls, TlsField};
use crate::error::FileError;
pub(crate) use tree::{saphyr_error, Pos};
use tree::{DeError, Kind, Node, NodeDeserializer, PathSeg};

/// A `--set key=value` override: a dotted path into the YAML (list items by
/// index) and a YAML value (`50`, `5s`, `[a, b]`; text that is not valid
/// YAML is taken as a plain string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The dotted path, e.g. `load.phases.0.ramp.to`.
    pub key: String,
    /// The value text.
    pub value: String,
    /// The flag it came from when not `--set` (e.g. `--ca` sets `tls.ca`),
    /// to name in errors.
    pub flag: Option<&'static str>,
}

impl Override {
    /// Parses `key=value`.
    pub fn parse(spec: &str) -> Result<Override, ScenarioError> {
        let bad = |reason: &str| ScenarioError::Override {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let (key, value) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected key=value"))?;
        let key = key.trim();
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(bad("expected a dotted key like `load.phases.0.ramp.to`"));
        }
        Ok(Override {
            key: key.to_owned(),
            value: value.to_owned(),
            flag: None,
        })
    }
}

impl FromStr for Override {
    type Err = ScenarioError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        Override::parse(spec)
    }
}

/// Parses any YAML document into `T` with the scenario loader's positioned
/// errors (`origin:line:column: message`), for other YAML files chorus reads
/// (protocol models, conformance cases).
pub fn parse_yaml<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: &str,
) -> Result<T, ScenarioError> {
    let invalid = |e: DeError| ScenarioError::Invalid {
        at: Location::new(origin, e.pos.unwrap_or_default()),
        message: e.message,
    };
    let root = tree::parse(text, 0).map_err(invalid)?;
    T::deserialize(NodeDeserializer(&root)).map_err(invalid)
}

impl Scenario {
    /// Loads and validates a scenario file.
    pub fn load(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        Self::load_with_overrides(path, &[])
    }

    /// Loads a scenario file, applies `overrides` to its YAML, then validates.
    pub fn load_with_overrides(
        path: impl AsRef<Path>,
        overrides: &[Override],
    ) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| FileError::new(path, e))?;
        Self::from_str_with_overrides(&text, &path.display().to_string(), overrides)
    }

    /// Parses and validates scenario text; `origin` names it in errors and its
    /// parent directory resolves relative paths (CSV files).
    pub fn from_str(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        Self::from_str_with_overrides(text, origin, &[])
    }

    /// [`Scenario::from_str`] with `--set` overrides applied before typing.
    pub fn from_str_with_overrides(
        text: &str,
        origin: &str,
        overrides: &[Override],
    ) -> Result<Scenario, ScenarioError> {
        let mut origins = vec![origin.to_owned()];
        let invalid = |origins: &[String], e: DeError| {
            let pos = e.pos.unwrap_or_default();
            let origin = origins.get(usize::from(pos.source));
            ScenarioError::Invalid {
                at: Location::new(origin.cloned().unwrap_or_default(), pos),
                message: e.message,
            }
        };
        let mut root = tree::parse(text, 0).map_err(|e| invalid(&origins, e))?;
        for (i, o) in overrides.iter().enumerate() {
            let source = u16::try_from(i + 1).map_err(|_| ScenarioError::Override {
                spec: o.key.clone(),
                reason: "too many overrides".into(),
            })?;
            origins.push(match o.flag {
                Some(flag) => flag.to_owned(),
                None => format!("--set {}", o.key),
            });
            let value = match tree::parse(&o.value, source) {
                Ok(node) if !o.value.trim().is_empty() => node,
                _ => Node {
                    pos: tree::Pos {
                        line: 1,
                        column: 1,
                        source,
                    },
                    kind: Kind::Str(o.value.clone()),
                },
            };
            let path: Vec<&str> = o.key.split('.').collect();
            root.set_path(&path, value)
                .map_err(|reason| ScenarioError::Override {
                    spec: format!("{}={}", o.key, o.value),
                    reason,
                })?;
        }
        let mut scenario =
            Scenario::deserialize(NodeDeserializer(&root)).map_err(|e| invalid(&origins, e))?;
        scenario.base_dir = Path::new(origin)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        if let Some(spread) = scenario.rooms.as_mut().filter(|s| s.problem().is_none()) {
            spread.compile();
        }
        validate::validate(&scenario, &root)
            .map_err(|e| invalid(&origins, DeError::at(e.message, e.pos)))?;
        origin.clone_into(&mut scenario.origin);
        if let Some(tls) = scenario.tls.as_mut() {
            for path in [&mut tls.ca, &mut tls.client_cert, &mut tls.client_key]
                .into_iter()
                .flatten()
            {
                *path = scenario.base_dir.join(&*path);
            }
            let built = Tls::new(tls).map_err(|e| {
                let at = match e.field {
                    TlsField::Settings => root.pos_of(&[PathSeg::Key("tls")]),
                    field => root.pos_of(&[PathSeg::Key("tls"), PathSeg::Key(field.key())]),
                };
                invalid(&origins, DeError::at(e.to_string(), at))
            })?;
            scenario.tls_client = Some(built);
        }
        if let Some(csv) = scenario.auth.as_mut().and_then(|a| a.csv.as_mut()) {
            csv.tokens = read_csv_tokens(&scenario.base_dir.join(&csv.file), &csv.column)?;
        }
        Ok(scenario)
    }

    /// The token source of this scenario (reads the JWT secret from the
    /// environment), or `None` without an `auth` section.
    pub fn token_source(&self) -> Result<Option<TokenSource>, ScenarioError> {
        self.auth
            .as_ref()
            .map(|auth| TokenSource::new(auth, &self.vars))
            .transpose()
    }

    /// A fresh client state for virtual user `vu`: vars rendered in order,
    /// and `token` set from `tokens` when given.
    pub fn vu_state(
        &self,
        vu: u64,
        tokens: Option<&TokenSource>,
        rng: &mut impl Rng,
    ) -> Result<VuState, ScenarioError> {
        let mut state = VuState::new(vu);
        if let Some(spread) = &self.rooms {
            for (var, room) in spread.vars.iter().zip(spread.rooms_of(vu)) {
                state.set(var.clone(), spread.name(room));
            }
        }
        for (name, template) in &self.vars {
            let value = template.render(&state, rng);
            state.set(name.clone(), value);
        }
        if let Some(tokens) = tokens {
            let token = tokens.token(&state, rng)?;
            state.set("token", token);
        }
        Ok(state)
    }

    /// Assigns clients to groups (see [`GroupPicker`]).
    pub fn group_picker(&self) -> GroupPicker {
        GroupPicker::new(&self.groups)
    }

    /// The sum of the phases' durations.
    pub fn phases_duration(&self) -> Duration {
        self.load.phases.iter().map(Phase::duration).sum()
    }
}

#[cfg(test)]
mod tests;
