//! Kernel receive timestamps: a run against the embedded gateway dates its
//! frames by the kernel and reports `driver.read_delay`; every transport,
//! plaintext and TLS, gets kernel times; a client that does not ask for them
//! reports user-space times.

use std::time::{Duration, Instant};

use chorus::client::{
    Client, ClientConfig, CloseReason, Handler, Incoming, RxSource, RxTime, Tls, TlsConfig,
    Transport,
};
use chorus::metrics::READ_DELAY;
use chorus::run::run;
use chorus_gateway::{GatewayConfig, Profile, RunningGateway};
use chorus_test_support::pki::Pki;
use tokio::sync::mpsc;

use crate::support::harness::{self, SERIAL};

const SECRET: &str = "rx-secret";
const WAIT: Duration = Duration::from_secs(5);
const TRANSPORTS: [Transport; 3] = [
    Transport::Websocket,
    Transport::Polling,
    Transport::PollingUpgrade,
];

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_dates_its_frames_by_the_kernel_and_reports_the_read_delay() {
    let _serial = SERIAL.lock().await;
    let options = harness::run_options(
        "scenarios/smoke.yml",
        None,
        harness::temp_dir("run-rx-timestamps"),
        &[
            "load.phases.0.ramp.over=2s",
            "load.phases.1.hold=1s",
            "groups.0.flow.4.loop.steps.1.think=200ms",
            "groups.0.flow.6.think=200ms",
            "groups.0.flow.8.listen=2s",
            r#"thresholds={"deliveries.lost": "== 0"}"#,
        ],
    );
    let report = tokio::time::timeout(Duration::from_secs(90), run(options))
        .await
        .expect("the run ends in time")
        .expect("the run completes");
    let s = &report.summary;
    let json = serde_json::to_value(s).expect("the summary serialises");
    assert_eq!(json["driver"]["rx_timestamps"], "kernel", "{:?}", s.driver);
    // A few reads may come unstamped while the kernel turns stamping on;
    // never for want of support or permission.
    let [unsupported, refused, _] = chorus::metrics::RX_USER_FRAMES;
    assert_eq!(s.counters.get(unsupported), Some(&0));
    assert_eq!(s.counters.get(refused), Some(&0));
    let delivered = s.latency["delivery.newMessage"].count;
    assert!(delivered > 0, "no deliveries");
    let delay = &s.latency[READ_DELAY];
    // One sample per frame read: at least one per delivery.
    assert!(
        delay.count >= delivered,
        "{delay:?} for {delivered} deliveries"
    );
    // Within the run: the kernel time never comes after the read, and no
    // sample is older than the run itself.
    assert!(delay.max_us <= (s.duration_s * 1e6) as u64, "{delay:?}");
    assert_eq!(s.driver.read_delay_p99_us, Some(delay.p99_us));
}

/// A seed gateway verifying tokens with `SECRET`, serving TLS with `pki`'s certificate when given.
async fn gateway(pki: Option<&Pki>) -> RunningGateway {
    chorus_test_support::gateway::start(GatewayConfig {
        tls_cert: pki.map(|p| p.cert.clone()),
        tls_key: pki.map(|p| p.key.clone()),
        ..chorus_test_support::gateway::config(Profile::Seed, SECRET)
    })
    .await
}

fn token(sub: &str) -> String {
    chorus_test_support::tokens::valid_for_an_hour(SECRET, sub)
}

/// Every frame's receive time, and the names of the events.
enum Seen {
    Frame(RxTime),
    Event(String, Instant),
}

struct Frames(mpsc::UnboundedSender<Seen>);

impl Handler for Frames {
    fn on_message(&mut self, at: Instant, message: Incoming<'_>) {
        if let Incoming::Event { name, .. } = message {
            let _ = self.0.send(Seen::Event(name.to_owned(), at));
        }
    }

    fn on_frame(&mut self, rx: RxTime) {
        let _ = self.0.send(Seen::Frame(rx));
    }

    fn on_closed(&mut self, _: Instant, _: CloseReason) {}
}

/// Connects, joins, and returns the frames read up to the `joined` reply
/// and the time `joined` was handed over with.
async fn frames_until_joined(config: &ClientConfig) -> (Vec<RxTime>, Instant) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (client, _) = Client::connect(config, Frames(tx)).await.expect("connects");
    client
        .emit("joinChat", &[r#"{"username":"rx"}"#])
        .await
        .expect("send");
    let mut frames = Vec::new();
    let joined_at = loop {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Some(Seen::Frame(f))) => frames.push(f),
            Ok(Some(Seen::Event(name, at))) if name == "joined" => break at,
            Ok(Some(Seen::Event(..))) => {}
            other => panic!("no joined within {WAIT:?}: {:?}", other.is_ok()),
        }
    };
    client.disconnect().await.expect("disconnects");
    (frames, joined_at)
}

#[tokio::test]
async fn every_transport_plain_and_tls_dates_frames_by_the_kernel_unless_told_not_to() {
    let pki = Pki::new("rx-timestamps");
    let plain = gateway(None).await;
    let secure = gateway(Some(&pki)).await;
    let tls = Tls::new(&TlsConfig {
        ca: Some(pki.ca.clone()),
        ..TlsConfig::default()
    })
    .expect("the CA loads");
    let expected = if cfg!(target_os = "linux") {
        RxSource::Kernel
    } else {
        RxSource::Unsupported
    };
    let (mut all, mut kernel) = (0, 0);
    for transport in TRANSPORTS {
        for (gw, tls) in [(&plain, None), (&secure, Some(tls.clone()))] {
            let mut config = ClientConfig::new(gw.url())
                .namespace("/chat")
                .transport(transport)
                .query("token", token("rx"));
            if let Some(tls) = tls {
                config = config.tls(tls);
            }
            let what = format!("{transport:?} {}", config.url);

            let (frames, joined_at) = frames_until_joined(&config).await;
            assert!(!frames.is_empty(), "{what}: no frames");
            for f in &frames {
                // A read may come unstamped while the kernel turns stamping on.
                assert!(
                    [expected, RxSource::NoControlMessage].contains(&f.source),
                    "{what}: {f:?}"
                );
                assert!(f.at <= f.read_at, "{what}: {f:?}");
            }
            all += frames.len();
            kernel += frames.iter().filter(|f| f.source == expected).count();
            // The event is handed over with the time of its frame.
            assert!(
                frames.iter().any(|f| f.at == joined_at),
                "{what}: joined not dated by a frame"
            );

            config.kernel_rx_timestamps = false;
            let (frames, _) = frames_until_joined(&config).await;
            assert!(!frames.is_empty(), "{what}: no frames");
            for f in &frames {
                assert_eq!(f.source, RxSource::Unsupported, "{what}");
                assert_eq!(f.at, f.read_at, "{what}");
            }
        }
    }
    assert!(
        kernel * 10 >= all * 9,
        "{kernel} of {all} frames dated as {expected:?}"
    );
    plain.shutdown().await;
    secure.shutdown().await;
}
