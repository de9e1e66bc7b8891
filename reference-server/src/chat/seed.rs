//! The seed profile's event handling: the tutorial's NestJS gateway as it
//! really runs (docs/protocol.md sections 2–5). A guard verifies the handshake
//! token on each of the three chat events; nothing is validated; the server
//! never acks.

use chorus_protocol::socketio::Event;
use serde_json::Value;

use super::{auth, payload, Chat, ChatSocket, Outcome};

/// Handles one event of a seed-profile socket.
pub(super) fn handle(chat: &Chat, socket: &mut ChatSocket, event: &Event<'_>, out: &mut Outcome) {
    let name = event.name.as_ref();
    if !matches!(name, "joinChat" | "sendMessage" | "typing") {
        return;
    }
    // NestJS hands the handler one argument as is, several as an array, none as `undefined`.
    let data: Option<Value> = match event.args.as_slice() {
        [] => None,
        [one] => serde_json::from_str(one.get()).ok(),
        many => Some(Value::Array(
            many.iter()
                .filter_map(|a| serde_json::from_str(a.get()).ok())
                .collect(),
        )),
    };
    let data_json = data.as_ref().map(Value::to_string);

    let verified = socket
        .token
        .as_deref()
        .ok_or(auth::Refusal::Missing)
        .and_then(|t| chat.verifier.verify_seed(t));
    if let Err(refusal) = verified {
        chat.metrics.refused_event(refusal.metric());
        let exception = payload::exception(refusal.message(), name, data_json.as_deref());
        return chat.exception(&socket.sid, &exception, out);
    }

    // `payload.x` on `null` or `undefined` throws: NestJS answers "Internal server error".
    let payload = data.as_ref().filter(|d| !d.is_null());
    let internal_error = |out: &mut Outcome| {
        chat.metrics.refused_event("internal_error");
        let exception = payload::exception("Internal server error", name, data_json.as_deref());
        chat.exception(&socket.sid, &exception, out);
    };
    match name {
        "joinChat" => match payload {
            Some(p) => {
                // The seed gateway never acks.
                chat.join(&socket.sid, payload::property(p, "username"), out);
            }
            None => internal_error(out),
        },
        "sendMessage" => {
            let Some(username) = chat.joined_name(&socket.sid) else {
                return;
            };
            match payload {
                Some(p) => {
                    chat.send_message(&username, payload::property(p, "message"), out);
                }
                None => internal_error(out),
            }
        }
        _ => {
            let Some(username) = chat.joined_name(&socket.sid) else {
                return;
            };
            match payload {
                Some(p) => chat.typing(
                    &socket.sid,
                    &username,
                    payload::property(p, "isTyping"),
                    out,
                ),
                None => internal_error(out),
            }
        }
    }
}
