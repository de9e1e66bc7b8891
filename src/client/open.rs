//! The Engine.IO open packet a client receives first, checked against the
//! client's [`Limits`] before any of its numbers is used.

use chorus_protocol::engineio::OpenPacket;

use super::config::Limits;
use super::error::{ClientError, Limit, LimitExceeded};

/// Parses the open packet's JSON and checks the ping interval and timeout it
/// announces against `limits` (they are added to instants later).
pub(crate) fn parse_open(data: &str, limits: &Limits) -> Result<OpenPacket, ClientError> {
    LimitExceeded::check(Limit::OpenPacketSize, data.len(), limits.max_open_packet)?;
    let open = OpenPacket::parse(data)?;
    for (limit, announced, max) in [
        (
            Limit::PingInterval,
            open.ping_interval,
            limits.max_ping_interval,
        ),
        (
            Limit::PingTimeout,
            open.ping_timeout,
            limits.max_ping_timeout,
        ),
    ] {
        let max = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        if announced > max {
            return Err(LimitExceeded::new(limit, announced, max).into());
        }
    }
    Ok(open)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_json(interval: &str, timeout: &str) -> String {
        format!(
            r#"{{"sid":"s","upgrades":[],"pingInterval":{interval},"pingTimeout":{timeout},"maxPayload":1000000}}"#
        )
    }

    fn limit_of(result: Result<OpenPacket, ClientError>) -> Limit {
        match result {
            Err(ClientError::Limit(b)) => b.limit,
            other => panic!("expected a limit breach, got {other:?}"),
        }
    }

    #[test]
    fn absurd_ping_settings_are_refused_by_name() {
        let l = Limits::default();
        let open = parse_open(&open_json("25000", "20000"), &l).unwrap();
        assert_eq!((open.ping_interval, open.ping_timeout), (25000, 20000));
        let max = "3600000";
        assert!(parse_open(&open_json(max, max), &l).is_ok());
        let huge = u64::MAX.to_string();
        assert_eq!(
            limit_of(parse_open(&open_json(&huge, "20000"), &l)),
            Limit::PingInterval
        );
        assert_eq!(
            limit_of(parse_open(&open_json("25000", &huge), &l)),
            Limit::PingTimeout
        );
        assert_eq!(
            limit_of(parse_open(&open_json("3600001", "1"), &l)),
            Limit::PingInterval
        );
        // Past u64: not an open packet at all.
        assert!(matches!(
            parse_open(&open_json("18446744073709551616", "1"), &l),
            Err(ClientError::Decode(_))
        ));
    }

    #[test]
    fn the_open_packet_is_bounded() {
        let l = Limits {
            max_open_packet: 200,
            ..Limits::default()
        };
        let padded = open_json("1", "1").replace(
            "\"sid\"",
            &format!("\"pad\":\"{}\",\"sid\"", "p".repeat(200)),
        );
        assert_eq!(limit_of(parse_open(&padded, &l)), Limit::OpenPacketSize);
        assert!(parse_open(&open_json("1", "1"), &l).is_ok());
    }
}
