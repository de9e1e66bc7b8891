//! The gateway's integration tests, one binary (as socketioxide and ripgrep
//! do): one module per subject, the fixture in `support`. The gateway runs in
//! process or as the `chorus-gateway` binary, on 127.0.0.1 port 0, and is
//! driven by raw Engine.IO clients, `rust_socketio` and the official
//! JavaScript client.

mod support;

mod attacks_packets;
mod attacks_transport;
mod cluster;
mod deploy;
// Injected faults exist only with the test feature (`cargo test --workspace`
// turns it on; `cargo test -p chorus-gateway` tests the gateway as it ships).
#[cfg(feature = "faults")]
mod faults;
mod interop;
mod ordering;
mod rooms;
mod seed_acks_and_malformed;
mod seed_auth;
mod seed_connection;
mod seed_events;
mod shutdown_under_load;
mod signals;
mod strict;
mod tls;
mod write_buffers;
