//! [`FaultProxy`]: a TCP proxy that stalls, cuts or switches the connections through it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    /// Bytes are held, in both directions, until the mode changes.
    Stall,
    /// Held only on connections whose client subscribed (sent `SUBSCRIBE`): a
    /// subscription that went silent while plain commands pass.
    StallSubscriptions,
}

impl Mode {
    fn passes(self, subscriber: bool) -> bool {
        match self {
            Self::Pass => true,
            Self::Stall => false,
            Self::StallSubscriptions => !subscriber,
        }
    }
}

/// A TCP proxy on a free loopback port in front of `upstream`. It can hold every byte
/// (a stalled server), or cut every open connection (a network failure), and counts
/// the requests of one kind that are in flight through it.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    mode: Arc<watch::Sender<Mode>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
    in_flight: Arc<InFlight>,
    close_next: Arc<AtomicI64>,
    cut_after: CutAfter,
}

/// The bytes that, the next time a client sends them, doom its connection: they reach
/// the server, and the connection is closed as soon as the server answers, before a byte
/// of the answer reaches the client.
type CutAfter = Arc<Mutex<Option<&'static [u8]>>>;

/// Requests of one kind sent through the proxy and not yet answered, over every open
/// connection: a request is an occurrence of `request` in what a client sends, its
/// answer an occurrence of `reply` in what the server sends back (in order, as Redis
/// answers). A connection that ends takes its unanswered requests with it.
#[derive(Debug)]
struct InFlight {
    request: &'static [u8],
    reply: &'static [u8],
    now: AtomicI64,
    peak: AtomicI64,
    total: AtomicI64,
}

/// Counts the occurrences of `needle` in `tail ++ chunk` and keeps the last bytes of the
/// stream in `tail`, so a needle split between two reads is counted once.
fn occurrences(needle: &[u8], tail: &mut Vec<u8>, chunk: &[u8]) -> i64 {
    if needle.is_empty() {
        return 0;
    }
    tail.extend_from_slice(chunk);
    let n = tail.windows(needle.len()).filter(|w| *w == needle).count();
    let keep = needle.len() - 1;
    let cut = tail.len().saturating_sub(keep);
    tail.drain(..cut);
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Which way a pump carries bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Up,
    Down,
}

/// Carries bytes one way. It keeps reading while the link is stalled (holding what it
/// reads), so a connection its source closes ends at once, stalled or not: held bytes
/// die with it, as on a real link, unless the link passes when the source closes.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: watch::Receiver<Mode>,
    way: Way,
    count: (Arc<InFlight>, Arc<AtomicI64>),
    (subscriber, doomed, cut_after): (Arc<AtomicBool>, Arc<AtomicBool>, CutAfter),
) {
    let (in_flight, open) = count;
    let is_subscriber = subscriber.clone();
    let (held, mut to_send) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let reader = async move {
        // A local, not a capture: dropped when reading ends, which ends the writer once
        // it has sent what is held.
        let held = held;
        let mut tail = Vec::new();
        let mut subscribe_tail = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let Some(chunk) = buf.get(..n) else { return };
            match way {
                // Sent by the client: in flight from now, even while the proxy holds it.
                Way::Up => {
                    let mut armed = cut_after.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(needle) = *armed
                        && chunk.windows(needle.len()).any(|w| w == needle)
                    {
                        doomed.store(true, Ordering::SeqCst);
                        *armed = None;
                    }
                    drop(armed);
                    if occurrences(b"SUBSCRIBE", &mut subscribe_tail, chunk) > 0 {
                        subscriber.store(true, Ordering::SeqCst);
                    }
                    let sent = occurrences(in_flight.request, &mut tail, chunk);
                    if sent > 0 {
                        open.fetch_add(sent, Ordering::SeqCst);
                        in_flight.total.fetch_add(sent, Ordering::SeqCst);
                        let now = in_flight.now.fetch_add(sent, Ordering::SeqCst) + sent;
                        in_flight.peak.fetch_max(now, Ordering::SeqCst);
                    }
                }
                // Answered once the server answered, before the client can read it (and
                // send its next request): one request is never counted twice.
                Way::Down => {
                    if doomed.load(Ordering::SeqCst) {
                        return;
                    }
                    let answered = occurrences(in_flight.reply, &mut tail, chunk);
                    if answered > 0 {
                        open.fetch_sub(answered, Ordering::SeqCst);
                        in_flight.now.fetch_sub(answered, Ordering::SeqCst);
                    }
                }
            }
            if held.send(chunk.to_vec()).is_err() {
                return;
            }
        }
    };
    let passes = mode.clone();
    let writer = async move {
        let mut mode = mode;
        while let Some(chunk) = to_send.recv().await {
            let sub = || is_subscriber.load(Ordering::SeqCst);
            if mode.wait_for(|m| m.passes(sub())).await.is_err() {
                return;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    let mut writer = std::pin::pin!(writer);
    tokio::select! {
        () = reader => {
            if *passes.borrow() == Mode::Pass {
                let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
            }
        }
        () = &mut writer => {}
    }
}

impl FaultProxy {
    /// Starts proxying to `upstream`. Must be called inside a Tokio runtime.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let mode = Arc::new(watch::channel(Mode::Pass).0);
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        // Redis's answer to a plain PING: what health checks send.
        let in_flight = Arc::new(InFlight {
            request: b"*1\r\n$4\r\nPING\r\n",
            reply: b"+PONG\r\n",
            now: AtomicI64::new(0),
            peak: AtomicI64::new(0),
            total: AtomicI64::new(0),
        });
        let close_next = Arc::new(AtomicI64::new(0));
        let cut_after: CutAfter = Arc::default();
        let upstream = Arc::new(Mutex::new(upstream));
        let accept = {
            let upstream = upstream.clone();
            let mode = mode.clone();
            let connections = connections.clone();
            let in_flight = in_flight.clone();
            let close_next = close_next.clone();
            let cut_after = cut_after.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    if close_next
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                            (n > 0).then(|| n - 1)
                        })
                        .is_ok()
                    {
                        drop(client);
                        continue;
                    }
                    let mode = mode.clone();
                    let in_flight = in_flight.clone();
                    let cut_after = cut_after.clone();
                    let upstream = *upstream.lock().unwrap_or_else(|p| p.into_inner());
                    let task = tokio::spawn(async move {
                        let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                            return;
                        };
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        let open = Arc::new(AtomicI64::new(0));
                        let count = || (in_flight.clone(), open.clone());
                        let subscriber = Arc::new(AtomicBool::new(false));
                        let doomed = Arc::new(AtomicBool::new(false));
                        let up = tokio::spawn(pump(
                            cr,
                            sw,
                            mode.subscribe(),
                            Way::Up,
                            count(),
                            (subscriber.clone(), doomed.clone(), cut_after.clone()),
                        ));
                        let down = tokio::spawn(pump(
                            sr,
                            cw,
                            mode.subscribe(),
                            Way::Down,
                            count(),
                            (subscriber, doomed, cut_after),
                        ));
                        let (abort_up, abort_down) = (up.abort_handle(), down.abort_handle());
                        // Whichever side ends first ends both; aborting this task ends both,
                        // and the connection's unanswered requests are no longer in flight.
                        struct Both(
                            tokio::task::AbortHandle,
                            tokio::task::AbortHandle,
                            Arc<InFlight>,
                            Arc<AtomicI64>,
                        );
                        impl Drop for Both {
                            fn drop(&mut self) {
                                self.0.abort();
                                self.1.abort();
                                let open = self.3.swap(0, Ordering::SeqCst);
                                self.2.now.fetch_sub(open, Ordering::SeqCst);
                            }
                        }
                        let _both = Both(abort_up, abort_down, in_flight.clone(), open.clone());
                        tokio::select! {
                            _ = up => {}
                            _ = down => {}
                        }
                    });
                    connections
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(task);
                }
            })
        };
        Self {
            addr,
            upstream,
            mode,
            connections,
            accept,
            in_flight,
            close_next,
            cut_after,
        }
    }

    /// The next time a client sends `needle` (`COMMIT`, say), its bytes reach the server
    /// and the connection is closed as soon as the server answers, the answer unread: a
    /// request done whose answer never arrived.
    pub fn cut_after_next(&self, needle: &'static [u8]) {
        *self.cut_after.lock().unwrap_or_else(|p| p.into_inner()) = Some(needle);
    }

    /// Closes the next `n` connections as soon as they are accepted, before a byte
    /// passes: a server that ends new sessions (restarting, or terminating them).
    pub fn close_next(&self, n: i64) {
        self.close_next.store(n, Ordering::SeqCst);
    }

    /// The most plain `PING`s that were ever in flight through the proxy at once (sent
    /// by a client and not yet answered, on connections still open).
    pub fn pings_in_flight_peak(&self) -> i64 {
        self.in_flight.peak.load(Ordering::SeqCst)
    }

    /// Every plain `PING` sent through the proxy so far.
    pub fn pings_sent(&self) -> i64 {
        self.in_flight.total.load(Ordering::SeqCst)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Holds every byte from now on, in both directions.
    pub fn stall(&self) {
        self.mode.send_replace(Mode::Stall);
    }

    /// Holds every byte, both ways, of the connections that subscribed (now or later):
    /// subscriptions go silent while plain commands pass.
    pub fn stall_subscriptions(&self) {
        self.mode.send_replace(Mode::StallSubscriptions);
    }

    /// Lets bytes through again, held ones first.
    pub fn resume(&self) {
        self.mode.send_replace(Mode::Pass);
    }

    /// Sends new connections to `upstream` from now on and closes every open one: an
    /// endpoint that fails over to another server, as a managed Redis's does.
    pub fn switch_to(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap_or_else(|p| p.into_inner()) = upstream;
        self.cut();
    }

    /// Closes every open connection; new ones are accepted as before.
    pub fn cut(&self) {
        for task in self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_needle_split_between_reads_is_counted_once() {
        let needle = b"PING\r\n";
        let mut tail = Vec::new();
        assert_eq!(occurrences(needle, &mut tail, b"*1\r\n$4\r\nPI"), 0);
        assert_eq!(
            occurrences(needle, &mut tail, b"NG\r\n*1\r\n$4\r\nPING\r\n"),
            2
        );
        assert_eq!(occurrences(needle, &mut tail, b"\r\n"), 0);
        assert_eq!(
            occurrences(needle, &mut tail, b"PING\r\nPING\r\nPING\r\n"),
            3
        );
    }
}
