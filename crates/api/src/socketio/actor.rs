//! The task that owns one session: it feeds the state machine what arrives (polls,
//! posts, WebSocket frames, the clock) and carries out what it answers. Every session
//! has one, wherever its requests land, so no request handler ever touches a session's
//! state.
//!
//! A WebSocket is split into a reader and a writer task on the worker that accepted it
//! (its stream cannot leave that thread). The writer takes at most [`WRITER_QUEUE`]
//! frames; events are taken from the session's receiver only when the writer has room,
//! or when a poll is waiting, so a client that does not read falls behind in its own
//! bounded receiver and skips events, never slowing another session.

use std::sync::Arc;
use std::time::Instant;

use actix_web::rt;
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::engine::{self, EngineError, Transport};
use super::session::{CloseReason, Effect, Session, Via};
use super::{SKIPPED, SocketIo};

/// Frames waiting for a WebSocket writer.
const WRITER_QUEUE: usize = 16;
/// Requests waiting for a session's task.
const COMMAND_QUEUE: usize = 16;

/// What a request handler asks of a session.
#[derive(Debug)]
pub(super) enum Command {
    /// A long-polling GET: answered with a payload, once there is something to send.
    Poll(oneshot::Sender<Result<String, EngineError>>),
    /// A long-polling POST's body.
    Post(String, oneshot::Sender<Result<(), EngineError>>),
    /// May a WebSocket take over this session?
    BeginUpgrade(oneshot::Sender<Result<(), EngineError>>),
    /// The WebSocket that asked.
    Probe(WsLink),
    /// End the session (the client sent something it may not).
    Close(CloseReason),
}

/// The actor's ends of a WebSocket.
#[derive(Debug)]
pub(super) struct WsLink {
    out: mpsc::Sender<Out>,
    inbound: mpsc::Receiver<WsIn>,
}

#[derive(Debug)]
enum Out {
    Text(String),
    Pong(Bytes),
    Close(Option<actix_ws::CloseReason>),
}

#[derive(Debug)]
enum WsIn {
    Text(String),
    TooLarge,
    Closed,
}

/// Splits an accepted WebSocket into a reader and a writer task on this worker.
pub(super) fn link(
    session: actix_ws::Session,
    stream: actix_ws::MessageStream,
    sio: &SocketIo,
) -> WsLink {
    let max = sio.options.max_payload;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    let (out, out_rx) = mpsc::channel(WRITER_QUEUE);
    let (in_tx, inbound) = mpsc::channel(WRITER_QUEUE);
    rt::spawn(write(session, out_rx, sio.ping_timeout()));
    rt::spawn(read(stream, in_tx, out.downgrade()));
    WsLink { out, inbound }
}

/// Hands frames to the connection. A frame the connection cannot take within the ping
/// timeout means a client that stopped reading: the connection is dropped.
async fn write(
    mut session: actix_ws::Session,
    mut frames: mpsc::Receiver<Out>,
    timeout: std::time::Duration,
) {
    while let Some(frame) = frames.recv().await {
        let sent = match frame {
            Out::Text(text) => tokio::time::timeout(timeout, session.text(text)).await,
            Out::Pong(bytes) => tokio::time::timeout(timeout, session.pong(&bytes)).await,
            Out::Close(reason) => {
                let _ = tokio::time::timeout(timeout, session.close(reason)).await;
                return;
            }
        };
        if !matches!(sent, Ok(Ok(()))) {
            return;
        }
    }
    let _ = tokio::time::timeout(timeout, session.close(None)).await;
}

/// Forwards the client's text frames to the session. It holds no strong handle on the
/// writer, so the connection closes as soon as the session lets it go.
async fn read(
    mut stream: AggregatedMessageStream,
    inbound: mpsc::Sender<WsIn>,
    writer: mpsc::WeakSender<Out>,
) {
    while let Some(message) = stream.next().await {
        let forward = match message {
            Ok(AggregatedMessage::Text(text)) => WsIn::Text(text.to_string()),
            Ok(AggregatedMessage::Ping(bytes)) => {
                if let Some(writer) = writer.upgrade() {
                    let _ = writer.try_send(Out::Pong(bytes));
                }
                continue;
            }
            // Binary messages are not carried (text only); pongs answer nothing we sent.
            Ok(AggregatedMessage::Binary(_) | AggregatedMessage::Pong(_)) => continue,
            Ok(AggregatedMessage::Close(_)) => WsIn::Closed,
            Err(actix_ws::ProtocolError::Overflow) => WsIn::TooLarge,
            Err(_) => WsIn::Closed,
        };
        let last = !matches!(forward, WsIn::Text(_));
        if inbound.send(forward).await.is_err() || last {
            return;
        }
    }
    let _ = inbound.send(WsIn::Closed).await;
}

/// Starts the task of a new session, on `ws` or (without it) on long-polling.
pub(super) fn spawn(sio: Arc<SocketIo>, session: Session, ws: Option<WsLink>) {
    let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
    sio.register(session.sid().to_owned(), commands_tx);
    let (ws_out, ws_in) = match ws {
        Some(link) => {
            // A fresh queue has room for the open packet.
            let _ = link.out.try_send(Out::Text(session.open_packet()));
            (Some(link.out), Some(link.inbound))
        }
        None => (None, None),
    };
    let actor = Actor {
        sio,
        s: session,
        commands,
        events: None,
        poll: None,
        ws_out,
        ws_in,
        probe_out: None,
        probe_in: None,
    };
    tokio::spawn(actor.run());
}

struct Actor {
    sio: Arc<SocketIo>,
    s: Session,
    commands: mpsc::Receiver<Command>,
    /// Events, while the default namespace is joined.
    events: Option<broadcast::Receiver<Arc<str>>>,
    /// The long-polling GET waiting for something to send.
    poll: Option<oneshot::Sender<Result<String, EngineError>>>,
    ws_out: Option<mpsc::Sender<Out>>,
    ws_in: Option<mpsc::Receiver<WsIn>>,
    probe_out: Option<mpsc::Sender<Out>>,
    probe_in: Option<mpsc::Receiver<WsIn>>,
}

enum Step {
    Close(CloseReason),
    Tick,
    Command(Command),
    Ws(Option<WsIn>, Via),
    Control(Option<mpsc::OwnedPermit<Out>>),
    Event(Option<mpsc::OwnedPermit<Out>>, Result<Arc<str>, RecvError>),
}

async fn recv_ws(rx: &mut Option<mpsc::Receiver<WsIn>>) -> Option<WsIn> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn reserve(out: Option<mpsc::Sender<Out>>) -> Option<mpsc::OwnedPermit<Out>> {
    out?.reserve_owned().await.ok()
}

/// The next event, with room for it on the writer first when there is one.
async fn next_event(
    out: Option<mpsc::Sender<Out>>,
    events: &mut Option<broadcast::Receiver<Arc<str>>>,
) -> (Option<mpsc::OwnedPermit<Out>>, Result<Arc<str>, RecvError>) {
    let permit = match out {
        Some(out) => match out.reserve_owned().await {
            Ok(permit) => Some(permit),
            Err(_) => return (None, Err(RecvError::Closed)),
        },
        None => None,
    };
    match events {
        Some(events) => (permit, events.recv().await),
        None => std::future::pending().await,
    }
}

impl Actor {
    async fn run(mut self) {
        let mut closing = self.sio.closing.clone();
        let reason = loop {
            self.flush_poll();
            let deadline = tokio::time::Instant::from_std(self.s.deadline());
            let on_ws = self.ws_out.is_some();
            let control = self.s.has_control();
            let wants_event = self.events.is_some()
                && if on_ws {
                    !control
                } else {
                    self.poll.is_some() && !self.s.polls_get_noop()
                };
            let step = tokio::select! {
                biased;
                _ = closing.wait_for(|c| *c) => Step::Close(CloseReason::ShuttingDown),
                () = tokio::time::sleep_until(deadline) => Step::Tick,
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => Step::Command(cmd),
                    None => Step::Close(CloseReason::ShuttingDown),
                },
                msg = recv_ws(&mut self.ws_in), if self.ws_in.is_some() => Step::Ws(msg, Via::Main),
                msg = recv_ws(&mut self.probe_in), if self.probe_in.is_some() => Step::Ws(msg, Via::Probe),
                permit = reserve(self.ws_out.clone()), if on_ws && control => Step::Control(permit),
                (permit, event) = next_event(self.ws_out.clone(), &mut self.events), if wants_event => {
                    Step::Event(permit, event)
                }
            };
            if let Err(reason) = self.step(step) {
                break reason;
            }
        };
        self.close(reason);
    }

    fn step(&mut self, step: Step) -> Result<(), CloseReason> {
        match step {
            Step::Close(reason) => Err(reason),
            Step::Tick => {
                let effect = self.s.tick(Instant::now())?;
                self.apply(effect);
                Ok(())
            }
            Step::Command(cmd) => self.command(cmd),
            Step::Ws(msg, via) => self.ws_message(msg, via),
            Step::Control(permit) => {
                let permit = permit.ok_or(CloseReason::TransportClose)?;
                if let Some(packet) = self.s.pop_control() {
                    permit.send(Out::Text(packet));
                }
                Ok(())
            }
            Step::Event(permit, event) => match event {
                Ok(event) => {
                    match permit {
                        Some(permit) => {
                            permit.send(Out::Text(event.to_string()));
                        }
                        None => self.answer_poll(Some(event)),
                    }
                    Ok(())
                }
                Err(RecvError::Lagged(skipped)) => {
                    metrics::counter!(SKIPPED).increment(skipped);
                    tracing::debug!(skipped, "socket.io client fell behind; events skipped");
                    Ok(())
                }
                // The writer is gone (no permit), or the event relay stopped.
                Err(RecvError::Closed) if self.ws_out.is_some() && permit.is_none() => {
                    Err(CloseReason::TransportClose)
                }
                Err(RecvError::Closed) => Err(CloseReason::ShuttingDown),
            },
        }
    }

    fn command(&mut self, cmd: Command) -> Result<(), CloseReason> {
        let now = Instant::now();
        match cmd {
            Command::Poll(reply) => {
                if self.s.transport() == Transport::WebSocket {
                    // A poll for a session that moved to WebSocket: refused, session kept.
                    let _ = reply.send(Err(EngineError::BadRequest));
                } else if self.poll.as_ref().is_some_and(|p| !p.is_closed()) {
                    // Two polls at once: the reference server ends the session.
                    let _ = reply.send(Err(EngineError::BadRequest));
                    return Err(CloseReason::ProtocolError);
                } else {
                    self.poll = Some(reply);
                }
                Ok(())
            }
            Command::Post(body, reply) => {
                if self.s.transport() == Transport::WebSocket {
                    let _ = reply.send(Err(EngineError::BadRequest));
                    return Ok(());
                }
                for packet in body.split(engine::SEPARATOR) {
                    match self.s.receive(packet, Via::Main, now) {
                        Ok(effect) => self.apply(effect),
                        Err(CloseReason::ClientClose) => {
                            let _ = reply.send(Ok(()));
                            return Err(CloseReason::ClientClose);
                        }
                        Err(reason) => {
                            let _ = reply.send(Err(EngineError::BadRequest));
                            return Err(reason);
                        }
                    }
                }
                let _ = reply.send(Ok(()));
                Ok(())
            }
            Command::BeginUpgrade(reply) => {
                let _ = reply.send(self.s.begin_upgrade(now));
                Ok(())
            }
            Command::Probe(link) => {
                if self.probe_out.is_none() && self.s.transport() == Transport::Polling {
                    self.probe_out = Some(link.out);
                    self.probe_in = Some(link.inbound);
                } else {
                    let _ = link.out.try_send(Out::Close(None));
                }
                Ok(())
            }
            Command::Close(reason) => Err(reason),
        }
    }

    fn ws_message(&mut self, msg: Option<WsIn>, via: Via) -> Result<(), CloseReason> {
        let result = match msg {
            Some(WsIn::Text(text)) => self.s.receive(&text, via, Instant::now()),
            Some(WsIn::TooLarge) => Err(CloseReason::TooLarge),
            Some(WsIn::Closed) | None => Err(CloseReason::TransportClose),
        };
        match (result, via) {
            (Ok(effect), _) => {
                self.apply(effect);
                Ok(())
            }
            (Err(reason), Via::Main) => Err(reason),
            // Whatever goes wrong on a probe abandons the upgrade, not the session.
            (Err(_), Via::Probe) => {
                self.s.probe_lost();
                self.apply(Effect::UpgradeCancelled);
                Ok(())
            }
        }
    }

    fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::None => {}
            Effect::Joined => self.events = Some(self.sio.events.subscribe()),
            Effect::Left => self.events = None,
            Effect::Probed => {
                if let Some(probe) = &self.probe_out {
                    let _ = probe.try_send(Out::Text(engine::Packet::Pong("probe").encode()));
                }
            }
            Effect::Upgraded => {
                self.ws_out = self.probe_out.take();
                self.ws_in = self.probe_in.take();
            }
            Effect::UpgradeCancelled => {
                if let Some(probe) = self.probe_out.take() {
                    let _ = probe.try_send(Out::Close(None));
                }
                self.probe_in = None;
            }
        }
    }

    /// Answers the waiting poll when there is something to answer without waiting.
    fn flush_poll(&mut self) {
        if self.poll.as_ref().is_some_and(oneshot::Sender::is_closed) {
            // The client gave up on that request.
            self.poll = None;
        }
        if self.poll.is_none() {
            return;
        }
        if self.s.transport() == Transport::WebSocket || self.s.polls_get_noop() {
            self.reply_poll(engine::Packet::Noop.encode());
        } else if self.s.has_control() {
            self.answer_poll(None);
        }
    }

    /// Answers the waiting poll with the control queue, `first`, and the events already
    /// waiting, up to about `maxPayload` bytes.
    fn answer_poll(&mut self, first: Option<Arc<str>>) {
        let limit = self.sio.options.max_payload;
        let mut packets: Vec<String> = Vec::new();
        let mut size = 0;
        while let Some(p) = self.s.pop_control() {
            size += p.len() + 1;
            packets.push(p);
        }
        if let Some(first) = first {
            size += first.len() + 1;
            packets.push(first.to_string());
        }
        if let Some(events) = &mut self.events {
            while size < limit {
                match events.try_recv() {
                    Ok(event) => {
                        size += event.len() + 1;
                        packets.push(event.to_string());
                    }
                    Err(TryRecvError::Lagged(skipped)) => {
                        metrics::counter!(SKIPPED).increment(skipped);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                }
            }
        }
        if !packets.is_empty() {
            self.reply_poll(engine::encode_payload(&packets));
        }
    }

    fn reply_poll(&mut self, payload: String) {
        if let Some(poll) = self.poll.take() {
            let _ = poll.send(Ok(payload));
        }
    }

    /// Ends the session: forgets it, then tells its transports.
    fn close(mut self, reason: CloseReason) {
        self.sio.unregister(self.s.sid());
        tracing::debug!(sid = self.s.sid(), ?reason, "socket.io session closed");
        self.reply_poll(engine::Packet::Close.encode());
        let code = match reason {
            CloseReason::ShuttingDown => CloseCode::Away,
            CloseReason::TooLarge => CloseCode::Size,
            CloseReason::ParseError | CloseReason::ProtocolError => CloseCode::Protocol,
            _ => CloseCode::Normal,
        };
        if let Some(out) = self.ws_out.take() {
            // A writer with no room belongs to a client that is not reading: it is
            // dropped when its frame times out, without a close frame.
            let _ = out.try_send(Out::Close(Some(code.into())));
        }
        if let Some(probe) = self.probe_out.take() {
            let _ = probe.try_send(Out::Close(Some(code.into())));
        }
        // Requests that raced with the end learn the session is gone.
        self.commands.close();
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Poll(reply) => {
                    let _ = reply.send(Err(EngineError::SessionIdUnknown));
                }
                Command::Post(_, reply) | Command::BeginUpgrade(reply) => {
                    let _ = reply.send(Err(EngineError::SessionIdUnknown));
                }
                Command::Probe(link) => {
                    let _ = link.out.try_send(Out::Close(None));
                }
                Command::Close(_) => {}
            }
        }
    }
}
