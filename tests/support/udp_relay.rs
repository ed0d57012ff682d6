//! A UDP relay between a WebRTC client and the server that can cut the network: the server
//! advertises the relay's address as its ICE candidate (`webrtc_public_ips` = another
//! loopback address, same port), the relay forwards both ways, and [`UdpRelay::cut`] drops
//! every datagram until [`UdpRelay::restore`], as a Wi-Fi hand-over or a tunnel would. No
//! kernel feature needed (this machine's kernel has no traffic-control qdiscs).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::UdpSocket;

/// A running relay; dropped, it stops.
pub struct UdpRelay {
    /// Where clients send (the address the server advertises).
    pub front: SocketAddr,
    cut: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    forwarded: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl UdpRelay {
    /// Listens on `front_ip` at `server`'s port and forwards to `server`, one back socket per
    /// client address (the server sees the relay's address as a peer-reflexive candidate).
    pub async fn start(front_ip: IpAddr, server: SocketAddr) -> UdpRelay {
        let front = Arc::new(
            UdpSocket::bind((front_ip, server.port()))
                .await
                .unwrap_or_else(|e| panic!("bind the relay at {front_ip}:{}: {e}", server.port())),
        );
        let front_addr = front.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let forwarded = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(relay(
            front,
            server,
            cut.clone(),
            dropped.clone(),
            forwarded.clone(),
        ));
        UdpRelay {
            front: front_addr,
            cut,
            dropped,
            forwarded,
            task,
        }
    }

    /// Drops every datagram, both ways, from now on.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Datagrams dropped while cut.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Datagrams forwarded.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    front: Arc<UdpSocket>,
    server: SocketAddr,
    cut: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    forwarded: Arc<AtomicU64>,
) {
    let mut backs: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, client)) = front.recv_from(&mut buf).await else {
            return;
        };
        if cut.load(Ordering::SeqCst) {
            dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let existing = backs.get(&client).cloned();
        let back = match existing {
            Some(b) => b,
            None => {
                let b = Arc::new(
                    UdpSocket::bind((front.local_addr().unwrap().ip(), 0))
                        .await
                        .expect("bind a relay back socket"),
                );
                backs.insert(client, b.clone());
                // Server -> client for this client.
                let (b2, f2, cut2, dropped2, fwd2) = (
                    b.clone(),
                    front.clone(),
                    cut.clone(),
                    dropped.clone(),
                    forwarded.clone(),
                );
                tasks.spawn(async move {
                    let mut buf = vec![0u8; 65_536];
                    while let Ok((n, _)) = b2.recv_from(&mut buf).await {
                        if cut2.load(Ordering::SeqCst) {
                            dropped2.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        if f2.send_to(&buf[..n], client).await.is_ok() {
                            fwd2.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
                b
            }
        };
        if back.send_to(&buf[..n], server).await.is_ok() {
            forwarded.fetch_add(1, Ordering::Relaxed);
        }
    }
}
