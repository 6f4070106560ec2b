//! The state of one Engine.IO session and its Socket.IO socket, without I/O: what a
//! packet from the client changes and what it asks to send, when the next heartbeat is
//! due and when the session has timed out. The shell (`actor.rs`) feeds it packets and
//! the time, and carries out the [`Effect`]s it returns.
//!
//! Packets for the client wait in a small control queue (open, pings, pongs to probes,
//! connect answers, acknowledgements); events never do: the shell takes them from the
//! session's bounded event receiver only when the transport can take them, so a client
//! that does not read skips events instead of holding them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::json;

use super::engine::{self, Handshake, Transport};
use super::packet::{self, DEFAULT_NAMESPACE, Kind};

/// Most packets waiting in the control queue; a client that asks for more
/// acknowledgements than it reads is closed.
pub const MAX_CONTROL: usize = 1024;

/// The protocol's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// A ping is sent this long after the last pong (or the handshake).
    pub ping_interval: Duration,
    /// A ping not answered within this is a dead client.
    pub ping_timeout: Duration,
    /// An upgrade must complete (probe, then upgrade packet) within this.
    pub upgrade_timeout: Duration,
    /// A session must connect to a namespace within this.
    pub connect_timeout: Duration,
}

impl Default for Timing {
    /// The defaults of the reference server.
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            upgrade_timeout: Duration::from_millis(10_000),
            connect_timeout: Duration::from_millis(45_000),
        }
    }
}

/// Which connection a packet came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The session's transport.
    Main,
    /// A WebSocket being probed to replace long-polling.
    Probe,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent a close packet.
    ClientClose,
    /// The client's connection ended.
    TransportClose,
    /// A ping went unanswered.
    PingTimeout,
    /// No namespace was joined in time.
    ConnectTimeout,
    /// A packet could not be read.
    ParseError,
    /// A packet made no sense in the session's state.
    ProtocolError,
    /// The client sent a message over `maxPayload`.
    TooLarge,
    /// The client let too many acknowledgements pile up unread.
    Overflow,
    /// The server is stopping.
    ShuttingDown,
}

/// What the shell must do after a packet or a tick, besides sending the control queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    /// The default namespace was joined: start receiving events.
    Joined,
    /// The default namespace was left: stop receiving events.
    Left,
    /// Answer `3probe` on the probe and a noop to the pending poll.
    Probed,
    /// The probe is now the transport.
    Upgraded,
    /// Drop the probe: the session stays on long-polling.
    UpgradeCancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upgrade {
    None,
    /// A WebSocket is attached; waiting for `2probe`.
    Probing {
        until: Instant,
    },
    /// `3probe` answered; waiting for `5`.
    Probed {
        until: Instant,
    },
}

/// One session's protocol state.
#[derive(Debug)]
pub struct Session {
    sid: String,
    transport: Transport,
    timing: Timing,
    max_payload: usize,
    upgrade: Upgrade,
    /// The socket id of the joined default namespace.
    socket: Option<String>,
    control: VecDeque<String>,
    next_ping: Instant,
    pong_due: Option<Instant>,
    connect_due: Option<Instant>,
}

impl Session {
    pub fn new(
        sid: String,
        transport: Transport,
        timing: Timing,
        max_payload: usize,
        now: Instant,
    ) -> Self {
        Self {
            sid,
            transport,
            timing,
            max_payload,
            upgrade: Upgrade::None,
            socket: None,
            control: VecDeque::new(),
            next_ping: now + timing.ping_interval,
            pong_due: None,
            connect_due: Some(now + timing.connect_timeout),
        }
    }

    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// The open packet: the handshake JSON, offering the upgrade on long-polling.
    pub fn open_packet(&self) -> String {
        let upgrades: &[&str] = match self.transport {
            Transport::Polling => &["websocket"],
            Transport::WebSocket => &[],
        };
        Handshake {
            sid: &self.sid,
            upgrades,
            ping_interval: millis(self.timing.ping_interval),
            ping_timeout: millis(self.timing.ping_timeout),
            max_payload: self.max_payload,
        }
        .open_packet()
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Whether the default namespace is joined, so events are sent.
    pub fn joined(&self) -> bool {
        self.socket.is_some()
    }

    /// Whether a poll must be answered with a noop: the client is moving to WebSocket.
    pub fn polls_get_noop(&self) -> bool {
        matches!(self.upgrade, Upgrade::Probed { .. })
    }

    pub fn has_control(&self) -> bool {
        !self.control.is_empty()
    }

    pub fn pop_control(&mut self) -> Option<String> {
        self.control.pop_front()
    }

    /// Puts a packet back at the head of the queue (its transport could not take it).
    pub fn unpop_control(&mut self, packet: String) {
        self.control.push_front(packet);
    }

    fn send(&mut self, packet: String) -> Result<(), CloseReason> {
        if self.control.len() >= MAX_CONTROL {
            return Err(CloseReason::Overflow);
        }
        self.control.push_back(packet);
        Ok(())
    }

    /// A WebSocket asks to take over this long-polling session.
    pub fn begin_upgrade(&mut self, now: Instant) -> Result<(), engine::EngineError> {
        if self.transport != Transport::Polling || self.upgrade != Upgrade::None {
            return Err(engine::EngineError::BadRequest);
        }
        self.upgrade = Upgrade::Probing {
            until: now + self.timing.upgrade_timeout,
        };
        Ok(())
    }

    /// The probing WebSocket went away before the upgrade completed.
    pub fn probe_lost(&mut self) {
        self.upgrade = Upgrade::None;
    }

    /// When [`tick`](Self::tick) must next be called.
    pub fn deadline(&self) -> Instant {
        let mut due = self.pong_due.unwrap_or(self.next_ping);
        if let Some(c) = self.connect_due {
            due = due.min(c);
        }
        if let Upgrade::Probing { until } | Upgrade::Probed { until } = self.upgrade {
            due = due.min(until);
        }
        due
    }

    /// Sends the heartbeat when due, and ends a session whose client stopped answering.
    pub fn tick(&mut self, now: Instant) -> Result<Effect, CloseReason> {
        if let Some(due) = self.pong_due
            && now >= due
        {
            return Err(CloseReason::PingTimeout);
        }
        if let Some(due) = self.connect_due
            && now >= due
        {
            return Err(CloseReason::ConnectTimeout);
        }
        if self.pong_due.is_none() && now >= self.next_ping {
            self.send(engine::Packet::Ping("").encode())?;
            self.pong_due = Some(now + self.timing.ping_timeout);
        }
        if let Upgrade::Probing { until } | Upgrade::Probed { until } = self.upgrade
            && now >= until
        {
            self.upgrade = Upgrade::None;
            return Ok(Effect::UpgradeCancelled);
        }
        Ok(Effect::None)
    }

    /// One Engine.IO packet from the client, as text.
    pub fn receive(&mut self, text: &str, via: Via, now: Instant) -> Result<Effect, CloseReason> {
        let packet = engine::decode_packet(text).map_err(|_| CloseReason::ParseError)?;
        if via == Via::Probe {
            return Ok(self.receive_probe(packet));
        }
        match packet {
            engine::Packet::Pong(_) => {
                self.pong_due = None;
                self.next_ping = now + self.timing.ping_interval;
                Ok(Effect::None)
            }
            engine::Packet::Message(message) => self.receive_message(message),
            engine::Packet::Close => Err(CloseReason::ClientClose),
            // The server pings in protocol 4; a client's ping is a protocol error.
            engine::Packet::Ping(_) | engine::Packet::Open(_) => Err(CloseReason::ProtocolError),
            engine::Packet::Upgrade | engine::Packet::Noop | engine::Packet::Binary => {
                Ok(Effect::None)
            }
        }
    }

    fn receive_probe(&mut self, packet: engine::Packet<'_>) -> Effect {
        match (packet, self.upgrade) {
            (engine::Packet::Ping("probe"), Upgrade::Probing { until }) => {
                self.upgrade = Upgrade::Probed { until };
                Effect::Probed
            }
            (engine::Packet::Upgrade, Upgrade::Probed { .. }) => {
                self.upgrade = Upgrade::None;
                self.transport = Transport::WebSocket;
                Effect::Upgraded
            }
            // Anything else on a probe abandons the upgrade, as the reference server does.
            _ => {
                self.upgrade = Upgrade::None;
                Effect::UpgradeCancelled
            }
        }
    }

    fn receive_message(&mut self, message: &str) -> Result<Effect, CloseReason> {
        let p = packet::decode(message).map_err(|_| CloseReason::ParseError)?;
        let default = p.namespace == DEFAULT_NAMESPACE;
        match (p.kind, default, self.joined()) {
            // The auth payload, if any, is accepted and ignored: the API has no users.
            (Kind::Connect, true, false) => {
                let socket = uuid::Uuid::new_v4().simple().to_string();
                let answer = packet::encode_connect(DEFAULT_NAMESPACE, &socket);
                self.send(engine::Packet::Message(&answer).encode())?;
                self.socket = Some(socket);
                self.connect_due = None;
                Ok(Effect::Joined)
            }
            (Kind::Connect, false, _) => {
                let answer = packet::encode_connect_error(p.namespace, "Invalid namespace");
                self.send(engine::Packet::Message(&answer).encode())?;
                Ok(Effect::None)
            }
            (Kind::Disconnect, true, true) => {
                self.socket = None;
                Ok(Effect::Left)
            }
            (Kind::Event, true, true) => {
                if p.event_name() == Some("ping")
                    && let Some(id) = p.id
                {
                    let ack = packet::encode_ack(DEFAULT_NAMESPACE, id, &json!(["pong"]));
                    self.send(engine::Packet::Message(&ack).encode())?;
                }
                Ok(Effect::None)
            }
            // Acknowledgements of nothing asked, and binary packets (text only here),
            // are ignored.
            (Kind::Ack | Kind::BinaryEvent | Kind::BinaryAck, true, true) => Ok(Effect::None),
            // A second connect, a packet for a namespace not joined, a client's
            // connect error: the reference server closes the connection.
            _ => Err(CloseReason::ProtocolError),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn timing() -> Timing {
        Timing {
            ping_interval: 100 * MS,
            ping_timeout: 50 * MS,
            upgrade_timeout: 30 * MS,
            connect_timeout: 1000 * MS,
        }
    }

    fn session(transport: Transport) -> (Session, Instant) {
        let now = Instant::now();
        (
            Session::new("sid1".into(), transport, timing(), 1000, now),
            now,
        )
    }

    /// A session that has joined the default namespace (its answer still queued).
    /// A session that joined the main namespace, its answer to the join already sent.
    fn joined(transport: Transport) -> (Session, Instant) {
        let (mut s, now) = session(transport);
        s.receive("40", Via::Main, now).expect("joined");
        drain(&mut s);
        (s, now)
    }

    fn drain(s: &mut Session) -> Vec<String> {
        std::iter::from_fn(|| s.pop_control()).collect()
    }

    #[test]
    fn the_open_packet_offers_the_upgrade_on_polling_only() {
        let (s, _) = session(Transport::Polling);
        assert!(s.open_packet().contains(r#""upgrades":["websocket"]"#));
        assert!(
            s.open_packet()
                .contains(r#""pingInterval":100,"pingTimeout":50"#)
        );
        let (s, _) = session(Transport::WebSocket);
        assert!(s.open_packet().contains(r#""upgrades":[]"#));
    }

    #[test]
    fn connecting_to_the_default_namespace_answers_a_socket_id() {
        let (mut s, now) = session(Transport::WebSocket);
        assert_eq!(
            s.receive(r#"40{"token":"ignored"}"#, Via::Main, now),
            Ok(Effect::Joined)
        );
        let answer = drain(&mut s);
        let [answer] = answer.as_slice() else {
            panic!("one answer: {answer:?}")
        };
        assert!(answer.starts_with(r#"40{"sid":""#), "{answer}");
        assert!(s.joined());
        // A second connect is a protocol error.
        assert_eq!(
            s.receive("40", Via::Main, now),
            Err(CloseReason::ProtocolError)
        );
    }

    #[test]
    fn other_namespaces_are_refused_and_the_session_stays() {
        let (mut s, now) = session(Transport::WebSocket);
        assert_eq!(s.receive("40/admin,", Via::Main, now), Ok(Effect::None));
        assert_eq!(
            drain(&mut s),
            vec![r#"44/admin,{"message":"Invalid namespace"}"#]
        );
        assert!(!s.joined());
        assert_eq!(s.receive("40", Via::Main, now), Ok(Effect::Joined));
    }

    #[test]
    fn ping_with_an_ack_is_answered_pong() {
        let (mut s, now) = joined(Transport::WebSocket);
        assert_eq!(
            s.receive(r#"4217["ping"]"#, Via::Main, now),
            Ok(Effect::None)
        );
        assert_eq!(drain(&mut s), vec![r#"4317["pong"]"#]);
        // Without an ack, or another event: nothing to answer.
        s.receive(r#"42["ping"]"#, Via::Main, now).expect("fine");
        s.receive(r#"423["other",1]"#, Via::Main, now)
            .expect("fine");
        assert!(drain(&mut s).is_empty());
    }

    #[test]
    fn events_before_joining_and_malformed_packets_end_the_session() {
        // An event before joining and a ping from the client are protocol errors; a
        // close is the client's own.
        for (text, reason) in [
            (r#"42["ping"]"#, CloseReason::ProtocolError),
            ("2", CloseReason::ProtocolError),
            ("1", CloseReason::ClientClose),
        ] {
            let (mut s, now) = session(Transport::WebSocket);
            assert_eq!(s.receive(text, Via::Main, now), Err(reason), "{text:?}");
        }
        for bad in ["", "9", "4", "49", "42[", r#"42{"a":1}"#, "44{}"] {
            let (mut s, now) = joined(Transport::WebSocket);
            assert!(s.receive(bad, Via::Main, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn leaving_stops_events_and_a_later_connect_rejoins() {
        let (mut s, now) = joined(Transport::Polling);
        assert_eq!(s.receive("41", Via::Main, now), Ok(Effect::Left));
        assert!(!s.joined());
        assert_eq!(s.receive("40", Via::Main, now), Ok(Effect::Joined));
    }

    #[test]
    fn heartbeats_are_sent_and_a_silent_client_times_out() {
        let (mut s, start) = joined(Transport::WebSocket);
        assert_eq!(s.deadline(), start + 100 * MS);
        assert_eq!(s.tick(start + 99 * MS), Ok(Effect::None));
        assert!(!s.has_control());
        assert_eq!(s.tick(start + 100 * MS), Ok(Effect::None));
        assert_eq!(drain(&mut s), vec!["2"]);
        assert_eq!(s.deadline(), start + 150 * MS);
        // Answered: the next ping is an interval after the pong.
        s.receive("3", Via::Main, start + 120 * MS).expect("pong");
        assert_eq!(s.deadline(), start + 220 * MS);
        assert_eq!(s.tick(start + 220 * MS), Ok(Effect::None));
        assert_eq!(drain(&mut s), vec!["2"]);
        // Not answered: dropped once the timeout passes, within interval + timeout.
        assert_eq!(s.tick(start + 269 * MS), Ok(Effect::None));
        assert_eq!(s.tick(start + 270 * MS), Err(CloseReason::PingTimeout));
    }

    #[test]
    fn a_session_that_never_joins_is_closed() {
        let (mut s, start) = session(Transport::Polling);
        let mut now;
        // Answer pings so only the connect timeout can end it.
        let err = loop {
            now = s.deadline();
            match s.tick(now) {
                Ok(_) => {
                    drain(&mut s);
                    s.receive("3", Via::Main, now).expect("pong");
                }
                Err(e) => break e,
            }
        };
        assert_eq!(err, CloseReason::ConnectTimeout);
        assert_eq!(now, start + 1000 * MS);
    }

    #[test]
    fn upgrade_probe_then_switch() {
        let (mut s, now) = joined(Transport::Polling);
        assert_eq!(s.begin_upgrade(now), Ok(()));
        assert_eq!(
            s.begin_upgrade(now),
            Err(engine::EngineError::BadRequest),
            "one upgrade at a time"
        );
        assert!(!s.polls_get_noop());
        assert_eq!(s.receive("2probe", Via::Probe, now), Ok(Effect::Probed));
        assert!(s.polls_get_noop());
        assert_eq!(s.receive("5", Via::Probe, now), Ok(Effect::Upgraded));
        assert_eq!(s.transport(), Transport::WebSocket);
        assert!(!s.polls_get_noop());
        assert_eq!(
            s.begin_upgrade(now),
            Err(engine::EngineError::BadRequest),
            "an upgraded session cannot upgrade again"
        );
    }

    #[test]
    fn a_bad_or_slow_probe_cancels_the_upgrade_only() {
        let (mut s, now) = session(Transport::Polling);
        s.begin_upgrade(now).expect("upgrade starts");
        assert_eq!(
            s.receive("5", Via::Probe, now),
            Ok(Effect::UpgradeCancelled)
        );
        assert_eq!(s.transport(), Transport::Polling);
        s.begin_upgrade(now).expect("upgrade starts again");
        assert_eq!(s.deadline(), now + 30 * MS);
        assert_eq!(s.tick(now + 30 * MS), Ok(Effect::UpgradeCancelled));
        assert_eq!(s.transport(), Transport::Polling);
        s.begin_upgrade(now).expect("and again");
        s.probe_lost();
        assert_eq!(s.begin_upgrade(now), Ok(()));
    }

    #[test]
    fn unread_acknowledgements_are_bounded() {
        let (mut s, now) = joined(Transport::Polling);
        let mut result = Ok(Effect::None);
        for i in 0..=MAX_CONTROL {
            result = s.receive(&format!("42{i}[\"ping\"]"), Via::Main, now);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(CloseReason::Overflow));
    }
}
