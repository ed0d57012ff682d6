//! The one UDP socket every WebRTC peer uses, demultiplexed across sessions with
//! `Rtc::accepts` (and a source-address cache for the packets that follow).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use str0m::net::{Protocol, Receive};
use str0m::{Input, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// One received datagram, handed to its session.
#[derive(Debug)]
pub(crate) struct Datagram {
    pub source: SocketAddr,
    pub data: Bytes,
    pub at: Instant,
}

struct Entry {
    key: u64,
    rtc: Arc<Mutex<Rtc>>,
    tx: mpsc::Sender<Datagram>,
}

/// The shared socket and the sessions registered on it.
pub(crate) struct UdpMux {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    /// The host candidates advertised for this socket (same port; other addresses behind a
    /// 1:1 NAT or a relay).
    advertised: Vec<SocketAddr>,
    sessions: Mutex<Vec<Entry>>,
    by_source: Mutex<HashMap<SocketAddr, u64>>,
    next_key: AtomicU64,
}

impl std::fmt::Debug for UdpMux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpMux")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

/// Datagrams queued per session before new ones are dropped (the peer retransmits).
const SESSION_QUEUE: usize = 1024;
/// Largest datagram read.
const MAX_DATAGRAM: usize = 2048;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl UdpMux {
    /// Binds `addr`; `advertised` are the host candidate addresses (their port becomes the
    /// bound port; none: the bound address).
    pub async fn bind(addr: SocketAddr, advertised: &[IpAddr]) -> std::io::Result<Arc<UdpMux>> {
        let socket = UdpSocket::bind(addr).await?;
        let local = socket.local_addr()?;
        let advertised = if advertised.is_empty() {
            vec![local]
        } else {
            advertised
                .iter()
                .map(|ip| SocketAddr::new(*ip, local.port()))
                .collect()
        };
        Ok(Arc::new(UdpMux {
            socket: Arc::new(socket),
            local,
            advertised,
            sessions: Mutex::new(Vec::new()),
            by_source: Mutex::new(HashMap::new()),
            next_key: AtomicU64::new(1),
        }))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The host candidates advertised for this socket.
    pub fn advertised(&self) -> &[SocketAddr] {
        &self.advertised
    }

    /// The local address str0m must be told a datagram from `source` arrived on: the
    /// advertised candidate it was sent to. str0m drops STUN whose destination is none of its
    /// host candidates, and behind a 1:1 NAT (or a relay) the bound address is not one. The
    /// socket cannot tell which advertised address a datagram was sent to (a socket bound to
    /// every interface least of all): the bound address if it is advertised, else the source's
    /// own address if advertised (a publisher on this host), else the first advertised address
    /// of the source's family. Replies go out of the one socket whichever it is.
    pub fn receive_address(&self, source: SocketAddr) -> SocketAddr {
        if self.advertised.contains(&self.local) {
            return self.local;
        }
        self.advertised
            .iter()
            .find(|a| a.ip() == source.ip())
            .or_else(|| {
                self.advertised
                    .iter()
                    .find(|a| a.is_ipv4() == source.is_ipv4())
            })
            .or(self.advertised.first())
            .copied()
            .unwrap_or(self.local)
    }

    pub fn socket(&self) -> &Arc<UdpSocket> {
        &self.socket
    }

    /// Registers a session; returns its key and the queue its datagrams arrive on.
    pub fn register(&self, rtc: Arc<Mutex<Rtc>>) -> (u64, mpsc::Receiver<Datagram>) {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        lock(&self.sessions).push(Entry { key, rtc, tx });
        (key, rx)
    }

    pub fn unregister(&self, key: u64) {
        lock(&self.sessions).retain(|e| e.key != key);
        lock(&self.by_source).retain(|_, k| *k != key);
    }

    pub fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Reads datagrams forever and hands each to the session that accepts it.
    pub async fn run(self: Arc<Self>) {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            // Amortized: reuses the space of datagrams already dropped by their sessions.
            buf.reserve(MAX_DATAGRAM);
            let source = match self.socket.recv_buf_from(&mut buf).await {
                Ok((_, source)) => source,
                Err(e) => {
                    // ICMP port unreachable and the like surface here; keep serving.
                    tracing::debug!("webrtc udp receive: {e}");
                    buf.clear();
                    continue;
                }
            };
            let data = buf.split().freeze();
            self.route(Datagram {
                source,
                data,
                at: Instant::now(),
            });
        }
    }

    fn route(&self, datagram: Datagram) {
        let known = lock(&self.by_source).get(&datagram.source).copied();
        let sessions = lock(&self.sessions);
        if let Some(key) = known {
            if let Some(entry) = sessions.iter().find(|e| e.key == key) {
                let _ = entry.tx.try_send(datagram);
                return;
            }
        }
        let Ok(contents) = datagram.data.as_ref().try_into() else {
            return;
        };
        let input = Input::Receive(
            datagram.at,
            Receive {
                proto: Protocol::Udp,
                source: datagram.source,
                destination: self.receive_address(datagram.source),
                contents,
            },
        );
        let found = sessions
            .iter()
            .find(|e| lock(&e.rtc).accepts(&input))
            .map(|e| (e.key, e.tx.clone()));
        drop(sessions);
        if let Some((key, tx)) = found {
            lock(&self.by_source).insert(datagram.source, key);
            let _ = tx.try_send(datagram);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn str0m_hears_of_the_advertised_address_the_datagram_was_sent_to() {
        // Bound and advertised alike (the tests' and a single-interface deployment).
        let mux = UdpMux::bind(addr("127.0.0.1:0"), &[]).await.unwrap();
        let local = mux.local_addr();
        assert_eq!(mux.advertised(), &[local]);
        assert_eq!(mux.receive_address(addr("127.0.0.1:5000")), local);

        // Behind a 1:1 NAT or a relay: the advertised address, never the bound one.
        let public: IpAddr = "127.0.0.2".parse().unwrap();
        let mux = UdpMux::bind(addr("127.0.0.1:0"), &[public]).await.unwrap();
        let port = mux.local_addr().port();
        let expected = SocketAddr::new(public, port);
        assert_eq!(mux.receive_address(addr("127.0.0.1:5000")), expected);
        assert_eq!(mux.receive_address(addr("[::1]:5000")), expected);

        // Bound to every interface: the source's own address when it is one of ours (a
        // publisher on this host), else the first of the source's family.
        let v4a: IpAddr = "10.0.0.5".parse().unwrap();
        let v4b: IpAddr = "192.168.1.2".parse().unwrap();
        let v6: IpAddr = "fd00::5".parse().unwrap();
        let mux = UdpMux::bind(addr("0.0.0.0:0"), &[v4a, v6, v4b])
            .await
            .unwrap();
        let port = mux.local_addr().port();
        let at = |ip: IpAddr| SocketAddr::new(ip, port);
        assert_eq!(mux.receive_address(addr("192.168.1.2:7000")), at(v4b));
        assert_eq!(mux.receive_address(addr("203.0.113.9:7000")), at(v4a));
        assert_eq!(mux.receive_address(addr("[2001:db8::1]:7000")), at(v6));
    }
}
