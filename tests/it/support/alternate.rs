//! A TCP forwarder on 127.0.0.1 port 0 that sends each new connection to
//! the next of its upstreams in turn: a load balancer without sticky
//! sessions, so that a polling client's second connection (its POSTs) lands
//! on another node than its handshake. Bounded: every connection task ends
//! with the forwarder (dropped, it aborts them all).

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The running forwarder; dropping it stops it and every connection.
pub struct Alternate {
    /// Where clients connect.
    pub addr: SocketAddr,
    _tasks: JoinSet<()>,
}

impl Alternate {
    /// Forwards connections to `upstreams`, the first to `upstreams[0]`, the
    /// next to `upstreams[1]`, and so on round.
    pub async fn start(upstreams: Vec<SocketAddr>) -> Self {
        assert!(!upstreams.is_empty(), "at least one upstream");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            let mut next = 0usize;
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstreams[next % upstreams.len()];
                next += 1;
                connections.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                // Forget the connections that ended.
                while connections.try_join_next().is_some() {}
            }
        });
        Self {
            addr,
            _tasks: tasks,
        }
    }
}
