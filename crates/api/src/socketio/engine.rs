//! Engine.IO protocol 4 over text: packets, long-polling payloads, the handshake, the
//! query string of a request and the protocol's error answers. Pure functions, no I/O.
//!
//! A packet is one digit (its type) followed by its data. Over WebSocket a frame holds
//! one packet; over long-polling a body holds packets separated by the record separator
//! `\x1e`. Binary packets (`b` and base64 on polling, binary frames on WebSocket) are
//! recognised and ignored: this server carries text only.

use serde::Serialize;

/// The only protocol version served (`EIO=4`).
pub const PROTOCOL: &str = "4";
/// Separates the packets of a long-polling payload.
pub const SEPARATOR: char = '\x1e';

/// One Engine.IO packet, borrowing its data from the text it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0` + handshake JSON: sent by the server only.
    Open(&'a str),
    /// `1`: the session ends.
    Close,
    /// `2` (+ `probe` during an upgrade).
    Ping(&'a str),
    /// `3` (+ `probe` during an upgrade).
    Pong(&'a str),
    /// `4` + a Socket.IO packet.
    Message(&'a str),
    /// `5`: the client switches to the probed WebSocket.
    Upgrade,
    /// `6`: nothing; answers a pending poll during an upgrade.
    Noop,
    /// `b` + base64: a binary message, not carried by this server.
    Binary,
}

/// Why a packet could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// An empty packet (also what an empty payload or a doubled separator gives).
    Empty,
    /// The first character is not a packet type.
    UnknownType,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty packet",
            Self::UnknownType => "unknown packet type",
        })
    }
}

/// Reads one packet.
pub fn decode_packet(text: &str) -> Result<Packet<'_>, ParseError> {
    let mut chars = text.chars();
    let kind = chars.next().ok_or(ParseError::Empty)?;
    let data = chars.as_str();
    Ok(match kind {
        '0' => Packet::Open(data),
        '1' => Packet::Close,
        '2' => Packet::Ping(data),
        '3' => Packet::Pong(data),
        '4' => Packet::Message(data),
        '5' => Packet::Upgrade,
        '6' => Packet::Noop,
        'b' => Packet::Binary,
        _ => return Err(ParseError::UnknownType),
    })
}

/// Reads every packet of a long-polling payload, in order.
pub fn decode_payload(body: &str) -> impl Iterator<Item = Result<Packet<'_>, ParseError>> {
    body.split(SEPARATOR).map(decode_packet)
}

impl Packet<'_> {
    /// The packet as text (a binary packet, never sent by this server, has no data).
    pub fn encode(&self) -> String {
        let (kind, data) = match self {
            Self::Open(d) => ('0', *d),
            Self::Close => ('1', ""),
            Self::Ping(d) => ('2', *d),
            Self::Pong(d) => ('3', *d),
            Self::Message(d) => ('4', *d),
            Self::Upgrade => ('5', ""),
            Self::Noop => ('6', ""),
            Self::Binary => ('b', ""),
        };
        let mut out = String::with_capacity(1 + data.len());
        out.push(kind);
        out.push_str(data);
        out
    }
}

/// Joins encoded packets into one long-polling payload.
pub fn encode_payload<S: AsRef<str>>(packets: &[S]) -> String {
    let len = packets.iter().map(|p| p.as_ref().len() + 1).sum();
    let mut out = String::with_capacity(len);
    for (i, p) in packets.iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        out.push_str(p.as_ref());
    }
    out
}

/// What the server tells a new session in its open packet.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Handshake<'a> {
    pub sid: &'a str,
    /// `["websocket"]` on long-polling, `[]` on WebSocket.
    pub upgrades: &'a [&'a str],
    pub ping_interval: u64,
    pub ping_timeout: u64,
    pub max_payload: usize,
}

impl Handshake<'_> {
    /// The open packet: `0{"sid":...,"upgrades":[...],"pingInterval":...}`.
    pub fn open_packet(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        Packet::Open(&json).encode()
    }
}

/// The two transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Polling,
    WebSocket,
}

/// What a request's query string says about the session it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub transport: Transport,
    /// The session, absent on a handshake.
    pub sid: Option<String>,
}

/// Reads `EIO`, `transport` and `sid` (the first of each; others, such as the
/// cache-busting `t`, are ignored). The transport is checked first, as Engine.IO does.
pub fn parse_query(query: &str) -> Result<Query, EngineError> {
    let mut eio = None;
    let mut transport = None;
    let mut sid = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match k.as_ref() {
            "EIO" => &mut eio,
            "transport" => &mut transport,
            "sid" => &mut sid,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(v.into_owned());
        }
    }
    let transport = match transport.as_deref() {
        Some("polling") => Transport::Polling,
        Some("websocket") => Transport::WebSocket,
        _ => return Err(EngineError::TransportUnknown),
    };
    if eio.as_deref() != Some(PROTOCOL) {
        return Err(EngineError::UnsupportedProtocolVersion);
    }
    Ok(Query {
        transport,
        sid: sid.filter(|s| !s.is_empty()),
    })
}

/// The errors Engine.IO answers a request with, as `{"code": N, "message": "..."}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineError {
    TransportUnknown,
    SessionIdUnknown,
    BadHandshakeMethod,
    BadRequest,
    Forbidden,
    UnsupportedProtocolVersion,
}

impl EngineError {
    pub fn code(self) -> u8 {
        match self {
            Self::TransportUnknown => 0,
            Self::SessionIdUnknown => 1,
            Self::BadHandshakeMethod => 2,
            Self::BadRequest => 3,
            Self::Forbidden => 4,
            Self::UnsupportedProtocolVersion => 5,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::TransportUnknown => "Transport unknown",
            Self::SessionIdUnknown => "Session ID unknown",
            Self::BadHandshakeMethod => "Bad handshake method",
            Self::BadRequest => "Bad request",
            Self::Forbidden => "Forbidden",
            Self::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// 403 for a refused origin, 400 for everything else.
    pub fn status(self) -> u16 {
        match self {
            Self::Forbidden => 403,
            _ => 400,
        }
    }

    /// The JSON body: `{"code":1,"message":"Session ID unknown"}`.
    pub fn body(self) -> String {
        serde_json::json!({"code": self.code(), "message": self.message()}).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_read_as_the_protocol_writes_them() {
        for (text, read) in [
            ("2", Ok(Packet::Ping(""))),
            ("2probe", Ok(Packet::Ping("probe"))),
            ("3probe", Ok(Packet::Pong("probe"))),
            ("40", Ok(Packet::Message("0"))),
            (r#"42["ping"]"#, Ok(Packet::Message(r#"2["ping"]"#))),
            ("1", Ok(Packet::Close)),
            ("5", Ok(Packet::Upgrade)),
            ("6", Ok(Packet::Noop)),
            ("bAQID", Ok(Packet::Binary)),
            ("", Err(ParseError::Empty)),
            ("7", Err(ParseError::UnknownType)),
            ("x", Err(ParseError::UnknownType)),
            ("é", Err(ParseError::UnknownType)),
        ] {
            assert_eq!(decode_packet(text), read, "{text:?}");
        }
    }

    #[test]
    fn encoding_is_the_inverse_of_decoding() {
        for text in ["0{}", "1", "2", "2probe", "3probe", "4hello", "5", "6"] {
            let packet = decode_packet(text).expect("a valid packet");
            assert_eq!(packet.encode(), text);
        }
    }

    #[test]
    fn payloads_split_on_the_record_separator() {
        let packets: Vec<_> = decode_payload("40\x1e42[\"ping\"]\x1e3").collect();
        assert_eq!(
            packets,
            vec![
                Ok(Packet::Message("0")),
                Ok(Packet::Message("2[\"ping\"]")),
                Ok(Packet::Pong(""))
            ]
        );
        assert_eq!(
            decode_payload("").collect::<Vec<_>>(),
            vec![Err(ParseError::Empty)]
        );
        assert!(decode_payload("2\x1e\x1e3").any(|p| p.is_err()));
        assert_eq!(encode_payload(&["2", "40", "6"]), "2\x1e40\x1e6");
        assert_eq!(encode_payload::<&str>(&[]), "");
    }

    #[test]
    fn the_handshake_names_every_field_the_client_reads() {
        let open = Handshake {
            sid: "abc",
            upgrades: &["websocket"],
            ping_interval: 25000,
            ping_timeout: 20000,
            max_payload: 1_000_000,
        }
        .open_packet();
        assert_eq!(
            open,
            r#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
    }

    #[test]
    fn queries_are_checked_transport_first_then_version() {
        assert_eq!(
            parse_query("EIO=4&transport=polling&t=NxYz"),
            Ok(Query {
                transport: Transport::Polling,
                sid: None
            })
        );
        assert_eq!(
            parse_query("EIO=4&transport=websocket&sid=a%2Bb"),
            Ok(Query {
                transport: Transport::WebSocket,
                sid: Some("a+b".into())
            })
        );
        assert_eq!(parse_query("EIO=4"), Err(EngineError::TransportUnknown));
        assert_eq!(
            parse_query("EIO=3&transport=flash"),
            Err(EngineError::TransportUnknown)
        );
        assert_eq!(
            parse_query("EIO=3&transport=polling"),
            Err(EngineError::UnsupportedProtocolVersion)
        );
        assert_eq!(
            parse_query("transport=polling"),
            Err(EngineError::UnsupportedProtocolVersion)
        );
        assert_eq!(
            parse_query("EIO=4&transport=polling&sid="),
            Ok(Query {
                transport: Transport::Polling,
                sid: None
            })
        );
    }

    #[test]
    fn errors_have_the_engine_io_body() {
        assert_eq!(
            EngineError::SessionIdUnknown.body(),
            r#"{"code":1,"message":"Session ID unknown"}"#
        );
        assert_eq!(EngineError::BadRequest.status(), 400);
        assert_eq!(EngineError::Forbidden.status(), 403);
        assert_eq!(EngineError::UnsupportedProtocolVersion.code(), 5);
    }
}
