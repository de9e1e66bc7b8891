//! What the `chorus` crate's tests share: `harness` drives the `chorus`
//! binary and library against an in-process gateway, `hostile` is a server
//! that misbehaves on purpose, `alternate` a load balancer without sticky
//! sessions, `verdict_lines` reads `chorus conform`'s output. What the
//! gateway's tests need too lives in `chorus-test-support`.

pub mod alternate;
pub mod harness;
pub mod hostile;
pub mod verdict_lines;
