//! The integration tests of the `chorus` crate, one binary (as socketioxide
//! and ripgrep do): one module per subject, what they share in `support`.
//! They start the reference gateway (in process, or embedded in the `chorus`
//! binary) on 127.0.0.1 port 0 and drive it with the `chorus` library and
//! binary; `tests/js` holds the npm interop peers.

mod support;

mod client;
mod cluster;
mod cluster_load;
mod compare;
mod conform;
mod conform_cluster;
mod distributed;
mod eio3;
mod faults_detected;
mod hostile_targets;
mod live_metrics;
mod nodes;
mod reconnect;
mod report;
mod report_real;
mod rooms;
mod run_accuracy;
mod rx_timestamps;
mod tls;
mod verdicts;
