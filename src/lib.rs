//! chorus: load and conformance testing for Socket.IO chat gateways.
//!
//! - [`client`]: our own Engine.IO v4 / Socket.IO v5 client engine, built for
//!   thousands of timestamped clients in one process.
//! - [`scenario`]: the YAML scenario language and its loader.
//! - [`metrics`]: lossless latency histograms, counters, thresholds and `summary.json`.

pub mod client;
pub mod conform;
pub mod error;
pub mod metrics;
pub mod report;
pub mod rules;
pub mod run;
pub mod scenario;
