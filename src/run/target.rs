//! Where a run sends its traffic: the `--target` URL, the scenario's
//! `target` (one URL or a list of nodes), or else the reference gateway
//! started in-process on 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use chorus_gateway::{GatewayConfig, Profile, RunningGateway};

use super::error::RunError;

/// Clients per local source address before the next 127.0.0.x is used
/// (the ephemeral port range holds about 28,000 ports per source address).
const CLIENTS_PER_SOURCE_IP: u64 = 20_000;

/// The gateway a run talks to.
pub enum Target {
    /// A gateway somebody else runs: one URL per node (at least one).
    Remote(Vec<String>),
    /// The reference gateway, in this process.
    Embedded {
        /// The running gateway.
        gateway: RunningGateway,
        /// Its URL.
        url: String,
        /// The fresh secret its tokens are signed with.
        secret: String,
    },
}

impl Target {
    /// The base URL of the first node (messages name it).
    pub fn url(&self) -> &str {
        &self.urls()[0]
    }

    /// The base URL of every node, by node index.
    pub fn urls(&self) -> &[String] {
        match self {
            Target::Remote(urls) => urls,
            Target::Embedded { url, .. } => std::slice::from_ref(url),
        }
    }

    /// How the summary names the target.
    pub fn describe(&self) -> String {
        match self {
            Target::Remote(urls) => urls.join(", "),
            Target::Embedded { url, .. } => format!("{url} (embedded reference gateway)"),
        }
    }

    /// Stops an embedded gateway.
    pub async fn stop(self) {
        if let Target::Embedded { gateway, .. } = self {
            gateway.shutdown().await;
        }
    }
}

/// `--target`, else the scenario's `target` list, else an embedded gateway
/// in `profile`. Every node is checked reachable first, each failing with
/// its own line.
pub async fn resolve(
    flag: Option<&str>,
    scenario: &[String],
    profile: Profile,
) -> Result<Target, RunError> {
    let urls: Vec<&str> = match flag {
        Some(url) => vec![url],
        None => scenario.iter().map(String::as_str).collect(),
    };
    if !urls.is_empty() {
        let checks = urls.iter().map(|url| check_reachable(url));
        let mut failed: Vec<RunError> = futures_util::future::join_all(checks)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        match failed.len() {
            0 => {}
            1 => return Err(failed.remove(0)),
            _ => {
                return Err(RunError::Nodes(
                    failed.iter().map(|e| e.to_string()).collect(),
                ))
            }
        }
        let urls = urls
            .iter()
            .map(|url| url.trim_end_matches('/').to_owned())
            .collect();
        return Ok(Target::Remote(urls));
    }
    let secret: String = {
        use rand::Rng;
        rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(32)
            .map(char::from)
            .collect()
    };
    let config = GatewayConfig {
        addr: (Ipv4Addr::LOCALHOST, 0).into(),
        profile,
        jwt_secret: secret.clone(),
        // The driver's own scenarios decide the rate and the number of clients;
        // the embedded gateway must not (the open-files limit still bounds it).
        rate_per_sec: 1_000_000.0,
        rate_burst: 1_000_000,
        max_connections: 1_000_000,
        ..GatewayConfig::default()
    };
    let gateway = chorus_gateway::start(config)
        .await
        .map_err(|e| RunError::Gateway(e.to_string()))?;
    let url = format!("http://{}", gateway.addr());
    Ok(Target::Embedded {
        gateway,
        url,
        secret,
    })
}

/// One TCP connect to the target's host and port, so that an unreachable
/// target is reported in one line before any client starts.
pub(super) async fn check_reachable(url: &str) -> Result<(), RunError> {
    let unreachable = |reason: String| RunError::Unreachable {
        url: url.to_owned(),
        reason,
    };
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let authority = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.ends_with(']'))
    {
        authority.to_owned()
    } else {
        let secure = url.starts_with("https://") || url.starts_with("wss://");
        format!("{authority}:{}", if secure { 443 } else { 80 })
    };
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(&authority),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(unreachable(err.to_string())),
        Err(_) => Err(unreachable("no answer within 5 s".to_owned())),
    }
}

/// Source addresses to spread `clients` connections over, when the target
/// is on IPv4 loopback and one address would run out of ports.
pub fn source_addresses(url: &str, clients: u64) -> Vec<IpAddr> {
    let host = url
        .split_once("://")
        .map_or(url, |(_, r)| r)
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    let loopback = host == "localhost" || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback || clients <= CLIENTS_PER_SOURCE_IP {
        return Vec::new();
    }
    let needed = clients.div_ceil(CLIENTS_PER_SOURCE_IP).min(250) as u8;
    (1..=needed)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_only_large_loopback_runs() {
        assert!(source_addresses("http://127.0.0.1:3000", 1_000).is_empty());
        assert!(source_addresses("http://10.1.2.3:3000", 90_000).is_empty());
        let ips = source_addresses("http://127.0.0.1:3000", 45_000);
        assert_eq!(ips.len(), 3);
        assert_eq!(ips[2], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
    }

    #[tokio::test]
    async fn an_unreachable_target_is_one_clear_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = check_reachable(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_err();
        let line = err.to_string();
        assert!(
            line.contains(&format!("127.0.0.1:{port}")) && !line.contains('\n'),
            "{line}"
        );
    }
}
