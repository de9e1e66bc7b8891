//! The gateway over TLS (`--tls-cert`/`--tls-key`), with certificates made by
//! the test: `/healthz` and `/metrics` on the one listener, the official JS
//! client chatting over `wss://` and `https://` polling, failed handshakes
//! (a plaintext client, a silent one) counted and never fatal, bad files
//! refused at start, and graceful shutdown with TLS connections open.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_gateway::{GatewayConfig, GatewayError, Profile, RunningGateway};
use chorus_test_support::pki::Pki;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::support::js::{self, JsClient};
use crate::support::{config, start_with, tokens, within, WAIT};

fn tls_config(pki: &Pki, profile: Profile) -> GatewayConfig {
    GatewayConfig {
        tls_cert: Some(pki.cert.clone()),
        tls_key: Some(pki.key.clone()),
        ..config(profile)
    }
}

async fn start_tls(pki: &Pki, profile: Profile) -> RunningGateway {
    start_with(tls_config(pki, profile)).await
}

/// A TLS connection to the gateway trusting only `ca`, offering ALPN `http/1.1`.
async fn tls_connect(gw: &RunningGateway, ca: &Path) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read the CA") {
        roots
            .add(cert.expect("a CA certificate"))
            .expect("add the CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(gw.addr()).await?;
    let name = ServerName::try_from("localhost").expect("a server name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// One `GET path` with `Connection: close` over `stream`; the raw response.
async fn get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    path: &str,
) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    stream.flush().await.expect("flush");
    let mut raw = Vec::new();
    // A peer that closes without close_notify still sent its answer.
    let _ = within(stream.read_to_end(&mut raw)).await;
    String::from_utf8_lossy(&raw).into_owned()
}

/// The value of a metric line in the gateway's `/metrics` text.
fn metric(gw: &RunningGateway, line_start: &str) -> u64 {
    gw.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {line_start}"))
}

/// Waits until the metric reaches `at_least`.
async fn metric_reaches(gw: &RunningGateway, line_start: &str, at_least: u64) {
    within(async {
        while metric(gw, line_start) < at_least {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn health_and_metrics_are_served_over_tls_on_the_same_listener() {
    let pki = Pki::new("health");
    let gw = start_tls(&pki, Profile::Strict).await;
    assert_eq!(gw.url(), format!("https://{}", gw.addr()));
    let mut tls = within(tls_connect(&gw, &pki.ca))
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let health = get(&mut tls, "/healthz").await;
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok"),
        "{health}"
    );
    let mut tls = within(tls_connect(&gw, &pki.ca))
        .await
        .expect("TLS handshake");
    let metrics = get(&mut tls, "/metrics").await;
    assert!(
        metrics.contains("chorus_gateway_tls_handshake_failures_total{reason=\"error\"} 0"),
        "{metrics}"
    );
    gw.shutdown().await;
}

/// Waits for one failed handshake to be counted, then checks that the
/// gateway still serves a client that trusts its CA, and shuts it down.
async fn counted_and_still_serving(gw: RunningGateway, pki: &Pki) {
    metric_reaches(
        &gw,
        "chorus_gateway_tls_handshake_failures_total{reason=\"error\"}",
        1,
    )
    .await;
    let mut tls = within(tls_connect(&gw, &pki.ca))
        .await
        .expect("TLS handshake");
    assert!(get(&mut tls, "/healthz").await.ends_with("ok"));
    gw.shutdown().await;
}

#[tokio::test]
async fn an_unknown_ca_is_refused_by_the_client_and_counted_by_the_gateway() {
    let pki = Pki::new("unknown-ca");
    let gw = start_tls(&pki, Profile::Strict).await;
    let err = within(tls_connect(&gw, &pki.other_ca))
        .await
        .expect_err("a certificate from an untrusted CA");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    counted_and_still_serving(gw, &pki).await;
}

#[tokio::test]
async fn a_plaintext_client_fails_cleanly_and_is_counted() {
    let pki = Pki::new("plaintext");
    let gw = start_tls(&pki, Profile::Strict).await;
    let started = Instant::now();
    let mut tcp = TcpStream::connect(gw.addr()).await.expect("connect");
    let answer = get(&mut tcp, "/healthz").await;
    assert!(
        !answer.contains("ok"),
        "plaintext got an answer: {answer:?}"
    );
    assert!(started.elapsed() < WAIT);
    counted_and_still_serving(gw, &pki).await;
}

#[tokio::test]
async fn the_tls_handshake_is_bounded_by_the_header_timeout() {
    let pki = Pki::new("silent");
    let gw = start_with(GatewayConfig {
        header_timeout_ms: 300,
        ..tls_config(&pki, Profile::Strict)
    })
    .await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(gw.addr()).await.expect("connect");
    let mut sink = Vec::new();
    let read = within(silent.read_to_end(&mut sink)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?} {sink:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    metric_reaches(
        &gw,
        "chorus_gateway_tls_handshake_failures_total{reason=\"timeout\"}",
        1,
    )
    .await;
    // A peer that connects and leaves is counted apart.
    drop(TcpStream::connect(gw.addr()).await.expect("connect"));
    metric_reaches(
        &gw,
        "chorus_gateway_tls_handshake_failures_total{reason=\"closed\"}",
        1,
    )
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn unusable_certificate_files_are_refused_at_start() {
    let pki = Pki::new("files");
    let missing = GatewayConfig {
        tls_cert: Some(pki.dir.join("nope.pem")),
        ..tls_config(&pki, Profile::Strict)
    };
    let err = chorus_gateway::start(missing)
        .await
        .err()
        .expect("no certificate");
    assert!(matches!(err, GatewayError::Tls(_)), "{err}");
    assert!(err.to_string().contains("nope.pem"), "{err}");
    // A certificate given as the key.
    let swapped = GatewayConfig {
        tls_key: Some(pki.cert.clone()),
        ..tls_config(&pki, Profile::Strict)
    };
    let err = chorus_gateway::start(swapped).await.err().expect("no key");
    assert!(err.to_string().contains("key"), "{err}");
    // A key whose certificate is another's.
    let mismatched = GatewayConfig {
        tls_cert: Some(pki.other_ca.clone()),
        ..tls_config(&pki, Profile::Strict)
    };
    assert!(chorus_gateway::start(mismatched).await.is_err());
}

#[test]
fn the_flags_come_in_pairs() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        config: GatewayConfig,
    }
    let parse = |args: &[&str]| {
        <Cli as clap::Parser>::try_parse_from(["gateway", "--jwt-secret", "s"].iter().chain(args))
            .map(|cli| cli.config)
    };
    let both = parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]).expect("both flags");
    assert_eq!(both.tls_cert.as_deref(), Some(Path::new("c.pem")));
    assert_eq!(both.tls_key.as_deref(), Some(Path::new("k.pem")));
    assert!(parse(&["--tls-cert", "c.pem"]).is_err());
    assert!(parse(&["--tls-key", "k.pem"]).is_err());
}

#[tokio::test]
async fn shutdown_stays_graceful_with_tls_connections_open() {
    let pki = Pki::new("shutdown");
    let gw = start_tls(&pki, Profile::Strict).await;
    // One finished handshake kept alive, one TCP connection that never starts one.
    let _kept = within(tls_connect(&gw, &pki.ca))
        .await
        .expect("TLS handshake");
    let _silent = TcpStream::connect(gw.addr()).await.expect("connect");
    let started = Instant::now();
    within_shutdown(gw).await;
    assert!(started.elapsed() < Duration::from_secs(10));
}

async fn within_shutdown(gw: RunningGateway) {
    crate::support::within_for(Duration::from_secs(15), gw.shutdown()).await;
}

/// The official socket.io-client, given the CA, runs the chat of section 2
/// over `transports`.
async fn js_chat_over_tls(transports: Option<&[&str]>) {
    let pki = Pki::new("js");
    let gw = start_tls(&pki, Profile::Seed).await;
    let token = tokens::valid("u1");
    let mut plan = js::plan(
        gw.addr(),
        transports,
        json!([
            {"op": "emit", "event": "joinChat", "args": [{"username": "alice"}]},
            {"op": "waitFor", "event": "joined"},
            {"op": "emit", "event": "sendMessage", "args": [{"message": "hello over tls"}]},
            {"op": "waitFor", "event": "newMessage"},
            {"op": "disconnect"},
        ]),
    );
    plan["url"] = json!(gw.url());
    plan["query"] = json!({ "token": token });
    plan["ca"] = json!(pki.ca_pem);
    let mut client = JsClient::spawn(&plan);
    let seen = client.collect_until("steps_done").await;
    let names: Vec<&str> = seen
        .iter()
        .filter(|l| l.get("args").is_some())
        .filter_map(|l| l["event"].as_str())
        .collect();
    assert_eq!(
        names,
        ["onlineUsers", "userOnline", "joined", "newMessage"],
        "{transports:?}: {seen:?}"
    );
    let message = seen
        .iter()
        .find(|l| l["event"] == "newMessage")
        .expect("a newMessage");
    assert_eq!(message["args"][0]["message"], json!("hello over tls"));
    if transports.is_none() {
        assert!(
            seen.iter()
                .any(|l| l["event"] == "upgrade" && l["transport"] == "websocket"),
            "https polling upgrades to wss: {seen:?}"
        );
    }
    drop(client);
    gw.shutdown().await;
}

#[tokio::test]
async fn the_official_js_client_chats_over_wss() {
    js_chat_over_tls(Some(&["websocket"])).await;
}

#[tokio::test]
async fn the_official_js_client_chats_over_https_polling_then_upgrade() {
    js_chat_over_tls(None).await;
}

#[tokio::test]
async fn the_official_js_client_is_refused_without_the_ca() {
    let pki = Pki::new("js-no-ca");
    let gw = start_tls(&pki, Profile::Seed).await;
    let mut plan = js::plan(gw.addr(), Some(&["websocket"]), json!([]));
    plan["url"] = json!(gw.url());
    let mut client = JsClient::spawn(&plan);
    let seen = client.collect_until("connect_error").await;
    assert!(!seen.iter().any(|l| l["event"] == "connect"), "{seen:?}");
    drop(client);
    gw.shutdown().await;
}
