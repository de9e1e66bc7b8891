//! The Socket.IO client engine: Engine.IO v4 / Socket.IO v5 over websocket,
//! HTTP long-polling, or polling upgraded to websocket, plaintext or TLS,
//! built so that one process can hold thousands of timestamped clients.
//!
//! [`Client::connect`] runs the connect sequence and returns the phase
//! [`ConnectTimings`]; everything received afterwards is handed, inline in the
//! client's reader task and borrowed from the frame, to a [`Handler`].

mod config;
mod connect;
mod error;
mod handler;
mod http;
mod polling;
mod rx_time;
mod session;
mod tls;
mod websocket;

pub use config::{ClientConfig, Limits, Transport};
pub use connect::ConnectTimings;
pub use error::{ClientError, Limit, LimitExceeded, SESSION_UNKNOWN};
pub use handler::{AckReply, CloseReason, Handler, Incoming};
pub use rx_time::{RxSource, RxTime};
pub use session::{Client, SentAck};
pub(crate) use tls::Stream;
pub use tls::{Tls, TlsConfig, TlsFailure, TlsField, TlsReason, TlsSetupError};
