//! Why client sessions ended, as counters: `disconnects.<label>` for every
//! close and `errors.<limit>` for a driver limit that was hit.

use crate::client::{CloseReason, SESSION_UNKNOWN};
use crate::metrics::Recorder;

/// The `disconnects.<label>` counter of a close.
pub fn counter(reason: &CloseReason) -> &'static str {
    match reason {
        CloseReason::ClientDisconnect => "disconnects.client",
        CloseReason::NamespaceDisconnect => "disconnects.server_namespace",
        CloseReason::ConnectRefused(_) => "disconnects.refused",
        CloseReason::ServerClosed { .. } => "disconnects.server_closed",
        // A poll that reached another node (no sticky sessions).
        CloseReason::Transport(text) if text.starts_with(SESSION_UNKNOWN) => {
            "disconnects.session_unknown"
        }
        CloseReason::PingTimeout => "disconnects.ping_timeout",
        CloseReason::Transport(_) => "disconnects.transport_error",
        CloseReason::Io(_) => "disconnects.io_error",
        CloseReason::Limit(_) => "disconnects.limit",
    }
}

/// Whether the session ended as a session should: the client left, or the
/// server disconnected it from the namespace.
pub fn is_goodbye(reason: &CloseReason) -> bool {
    matches!(
        reason,
        CloseReason::ClientDisconnect | CloseReason::NamespaceDisconnect
    )
}

/// Whether a client that reconnects tries again after this close: a lost
/// transport, as socket.io-client does, not a goodbye, a namespace refusal
/// or a driver limit the server broke.
pub fn reconnects(reason: &CloseReason) -> bool {
    matches!(
        reason,
        CloseReason::ServerClosed { .. }
            | CloseReason::PingTimeout
            | CloseReason::Transport(_)
            | CloseReason::Io(_)
    )
}

/// Counts a close. Closes are rare, so their counters are registered on
/// first use (a run without a ping timeout has no `disconnects.ping_timeout`).
pub fn count(recorder: &Recorder, reason: &CloseReason) {
    recorder.add_by_name(counter(reason), 1);
    if let CloseReason::Limit(breach) = reason {
        // A named error: `errors.limit.ws_frame_size`, …
        let name = format!("errors.{}", breach.limit.metric_name());
        recorder.add_by_name(&name, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientError;

    #[test]
    fn a_session_lost_to_another_node_has_its_own_counter() {
        let unknown = CloseReason::Transport(ClientError::SessionUnknown.to_string());
        assert_eq!(counter(&unknown), "disconnects.session_unknown");
        let other = CloseReason::Transport("handshake failed with HTTP 400: x".into());
        assert_eq!(counter(&other), "disconnects.transport_error");
    }
}
