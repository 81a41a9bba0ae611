//! A TCP proxy in front of the broker that can cut every connection, as a broker restart or a
//! network partition looks to its clients.
//!
//! It runs on its own thread and runtime, so a test blocked in a synchronous call (starting
//! Tansu, say) does not stall the traffic through it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A proxy on a loopback port forwarding to `upstream`.
pub struct Proxy {
    /// The port clients connect to.
    pub port: u16,
    /// Bumped on every cut: live connections reset when it changes.
    cuts: watch::Sender<u64>,
    /// New connections are reset until then.
    refuse_until: Arc<Mutex<Option<Instant>>>,
    stop: watch::Sender<bool>,
}

impl Proxy {
    /// Listens on a free port, forwarding each connection to `127.0.0.1:upstream_port`.
    pub fn start(upstream_port: u16) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let (cuts, cut_rx) = watch::channel(0u64);
        let (stop, mut stop_rx) = watch::channel(false);
        let refuse_until = Arc::new(Mutex::new(None::<Instant>));
        let refusing = refuse_until.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    let accepted = tokio::select! {
                        _ = stop_rx.changed() => return,
                        accepted = listener.accept() => accepted,
                    };
                    let Ok((client, _)) = accepted else { continue };
                    let refused = refusing
                        .lock()
                        .map(|until| until.is_some_and(|u| Instant::now() < u))
                        .unwrap_or(false);
                    if refused {
                        reset(client);
                        continue;
                    }
                    tokio::spawn(forward(client, upstream_port, cut_rx.clone()));
                }
            });
        });
        Self {
            port,
            cuts,
            refuse_until,
            stop,
        }
    }

    /// `host:port` of the proxy.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Resets every live connection and every new one for `outage`, then forwards again.
    pub fn cut(&self, outage: Duration) {
        *self.refuse_until.lock().expect("lock") = Some(Instant::now() + outage);
        self.cuts.send_modify(|n| *n += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Closes `stream` with a TCP reset (linger 0), as a crashed peer would.
// Deprecated because a non-zero linger blocks the thread on drop; a zero one does not, and
// the reset is the point.
#[allow(deprecated)]
fn reset(stream: TcpStream) {
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn forward(mut client: TcpStream, upstream_port: u16, mut cuts: watch::Receiver<u64>) {
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", upstream_port)).await else {
        reset(client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    cuts.mark_unchanged();
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = cuts.changed() => {}
    }
    reset(client);
    reset(upstream);
}
