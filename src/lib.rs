//! chorus: load and conformance testing for Socket.IO chat gateways.
//!
//! - [`client`]: our own Engine.IO v4 / Socket.IO v5 client engine, built for
//!   thousands of timestamped clients in one process.
//! - [`scenario`]: the YAML scenario language and its loader.
//! - [`metrics`]: lossless latency histograms, counters, thresholds and `summary.json`.
//! - [`rules`]: protocol models, a gateway's delivery rules as data.
//! - [`run`]: `chorus run` and `chorus merge`.
//! - [`report`]: the terminal table, `report.html`, `summary.md`, JUnit and `chorus compare`.
//! - [`conform`]: `chorus conform`, the conformance suite.
//! - [`error`]: error pieces the domains' error enums share.
//!
//! Imports go one way, down this order: `conform`, `run`, `report`, `rules`,
//! `metrics`, `scenario`, `client`, `error` (no module imports one before it).

#![warn(missing_docs)]

pub mod client;
pub mod conform;
pub mod error;
pub mod metrics;
pub mod report;
pub mod rules;
pub mod run;
pub mod scenario;
