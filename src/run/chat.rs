//! What the driver knows of the chat protocol (PROTOCOL.md section 2): the
//! events it correlates to time every delivery.

/// The client event that joins the chat.
pub const JOIN: &str = "joinChat";
/// The reply to the sender of `joinChat`.
pub const JOINED: &str = "joined";
/// The client event that sends a message.
pub const SEND_MESSAGE: &str = "sendMessage";
/// The client event that signals typing.
pub const TYPING: &str = "typing";
/// Broadcast for `sendMessage`, to everyone.
pub const NEW_MESSAGE: &str = "newMessage";
/// Broadcast for `typing`, to everyone but the sender.
pub const USER_TYPING: &str = "userTyping";
/// Broadcast for `joinChat`, to everyone.
pub const USER_ONLINE: &str = "userOnline";
/// Broadcast when a joined client leaves, to everyone left.
pub const USER_OFFLINE: &str = "userOffline";
/// The server's error reply.
pub const EXCEPTION: &str = "exception";

/// The broadcasts whose delivery latency is measured for every receiver.
pub const BROADCASTS: [&str; 4] = [NEW_MESSAGE, USER_TYPING, USER_ONLINE, USER_OFFLINE];
