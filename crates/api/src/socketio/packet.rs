//! Socket.IO protocol 5 packets over text, as carried in Engine.IO messages. Pure
//! functions, no I/O.
//!
//! A packet is `<type>[<attachments>-][<namespace>,][<ack id>][<JSON data>]`: for
//! example `0` (connect to `/`), `0/admin,` (connect to `/admin`), `2["ping"]` (an
//! event), `212["ping"]` (an event asking for acknowledgement 12) and `312["pong"]`
//! (that acknowledgement). Data is checked as the reference parser checks it: an event
//! is an array whose first element names it; a connect carries an object or nothing.

use serde_json::Value;

/// The default namespace, the only one this server has.
pub const DEFAULT_NAMESPACE: &str = "/";

/// Event names the protocol reserves; a client may not emit them.
pub const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Largest acknowledgement id accepted (what a JavaScript number holds exactly).
const MAX_ACK_ID: u64 = (1 << 53) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

/// One Socket.IO packet, its namespace borrowed from the text it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet<'a> {
    pub kind: Kind,
    pub namespace: &'a str,
    pub id: Option<u64>,
    pub data: Option<Value>,
}

/// Why a packet could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    UnknownType,
    BadAttachments,
    BadAckId,
    InvalidJson,
    InvalidPayload,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::UnknownType => "unknown packet type",
            Self::BadAttachments => "illegal attachments",
            Self::BadAckId => "invalid acknowledgement id",
            Self::InvalidJson => "invalid payload",
            Self::InvalidPayload => "invalid payload for the packet type",
        })
    }
}

/// Reads one packet.
pub fn decode(text: &str) -> Result<Packet<'_>, DecodeError> {
    let mut rest = text;
    let kind = match take_char(&mut rest) {
        Some('0') => Kind::Connect,
        Some('1') => Kind::Disconnect,
        Some('2') => Kind::Event,
        Some('3') => Kind::Ack,
        Some('4') => Kind::ConnectError,
        Some('5') => Kind::BinaryEvent,
        Some('6') => Kind::BinaryAck,
        _ => return Err(DecodeError::UnknownType),
    };
    if matches!(kind, Kind::BinaryEvent | Kind::BinaryAck) {
        let (count, after) = rest.split_once('-').ok_or(DecodeError::BadAttachments)?;
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DecodeError::BadAttachments);
        }
        count
            .parse::<u32>()
            .map_err(|_| DecodeError::BadAttachments)?;
        rest = after;
    }
    let namespace = if rest.starts_with('/') {
        match rest.split_once(',') {
            Some((nsp, after)) => {
                rest = after;
                nsp
            }
            None => std::mem::take(&mut rest),
        }
    } else {
        DEFAULT_NAMESPACE
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = if digits > 0 {
        let (id, after) = rest.split_at(digits);
        rest = after;
        let id = id.parse::<u64>().map_err(|_| DecodeError::BadAckId)?;
        if id > MAX_ACK_ID {
            return Err(DecodeError::BadAckId);
        }
        Some(id)
    } else {
        None
    };
    let data = if rest.is_empty() {
        None
    } else {
        Some(serde_json::from_str::<Value>(rest).map_err(|_| DecodeError::InvalidJson)?)
    };
    if !payload_is_valid(kind, data.as_ref()) {
        return Err(DecodeError::InvalidPayload);
    }
    Ok(Packet {
        kind,
        namespace,
        id,
        data,
    })
}

fn take_char(s: &mut &str) -> Option<char> {
    let mut chars = s.chars();
    let c = chars.next()?;
    *s = chars.as_str();
    Some(c)
}

fn payload_is_valid(kind: Kind, data: Option<&Value>) -> bool {
    match kind {
        Kind::Connect => data.is_none_or(Value::is_object),
        Kind::Disconnect => data.is_none(),
        Kind::ConnectError => data.is_some_and(|d| d.is_string() || d.is_object()),
        Kind::Event | Kind::BinaryEvent => match data.and_then(Value::as_array) {
            Some(args) => match args.first() {
                Some(Value::Number(_)) => true,
                Some(Value::String(name)) => !RESERVED_EVENTS.contains(&name.as_str()),
                _ => false,
            },
            None => false,
        },
        Kind::Ack | Kind::BinaryAck => data.is_some_and(Value::is_array),
    }
}

impl Packet<'_> {
    /// The event name of an event packet.
    pub fn event_name(&self) -> Option<&str> {
        match self.kind {
            Kind::Event | Kind::BinaryEvent => self
                .data
                .as_ref()
                .and_then(Value::as_array)
                .and_then(|args| args.first())
                .and_then(Value::as_str),
            _ => None,
        }
    }
}

/// `/admin,` for a namespace other than the default one, nothing for the default.
fn namespace_prefix(out: &mut String, namespace: &str) {
    if namespace != DEFAULT_NAMESPACE {
        out.push_str(namespace);
        out.push(',');
    }
}

/// The server's answer to a connect: `0{"sid":"..."}`.
pub fn encode_connect(namespace: &str, sid: &str) -> String {
    let mut out = String::from("0");
    namespace_prefix(&mut out, namespace);
    out.push_str(&serde_json::json!({ "sid": sid }).to_string());
    out
}

/// A refused connect: `4/admin,{"message":"Invalid namespace"}`.
pub fn encode_connect_error(namespace: &str, message: &str) -> String {
    let mut out = String::from("4");
    namespace_prefix(&mut out, namespace);
    out.push_str(&serde_json::json!({ "message": message }).to_string());
    out
}

/// An acknowledgement: `3<id>[args...]`.
pub fn encode_ack(namespace: &str, id: u64, args: &Value) -> String {
    let mut out = String::from("3");
    namespace_prefix(&mut out, namespace);
    out.push_str(&id.to_string());
    out.push_str(&args.to_string());
    out
}

/// An event of the default namespace from its name and its data as JSON text:
/// `2["name",data]`.
pub fn encode_event(name: &str, data_json: Option<&str>) -> String {
    let name = serde_json::to_string(name).unwrap_or_else(|_| "\"\"".to_owned());
    let mut out = String::with_capacity(name.len() + data_json.map_or(0, str::len) + 4);
    out.push_str("2[");
    out.push_str(&name);
    if let Some(data) = data_json {
        out.push(',');
        out.push_str(data);
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(text: &str) -> Packet<'_> {
        decode(text).unwrap_or_else(|e| panic!("{text:?} is valid: {e}"))
    }

    #[test]
    fn connects_to_the_default_and_other_namespaces() {
        let p = ok("0");
        assert_eq!(
            (p.kind, p.namespace, p.id, p.data),
            (Kind::Connect, "/", None, None)
        );
        let p = ok(r#"0{"token":"abc"}"#);
        assert_eq!(p.data, Some(json!({"token": "abc"})));
        let p = ok("0/admin,");
        assert_eq!((p.kind, p.namespace), (Kind::Connect, "/admin"));
        let p = ok(r#"0/admin,{"a":1}"#);
        assert_eq!((p.namespace, p.data), ("/admin", Some(json!({"a": 1}))));
        // A namespace with nothing after it, as the reference parser reads it.
        assert_eq!(ok("0/admin").namespace, "/admin");
    }

    #[test]
    fn events_and_acknowledgements() {
        let p = ok(r#"2["ping"]"#);
        assert_eq!(
            (p.kind, p.id, p.event_name()),
            (Kind::Event, None, Some("ping"))
        );
        let p = ok(r#"212["ping",{"x":1}]"#);
        assert_eq!((p.id, p.event_name()), (Some(12), Some("ping")));
        let p = ok(r#"2/admin,7["hello"]"#);
        assert_eq!((p.namespace, p.id), ("/admin", Some(7)));
        assert_eq!(ok("2[1]").event_name(), None);
        assert_eq!(ok(r#"31["pong"]"#).kind, Kind::Ack);
        assert_eq!(ok("29007199254740991[\"a\"]").id, Some(MAX_ACK_ID));
    }

    #[test]
    fn the_other_packet_types() {
        assert_eq!(ok("1").kind, Kind::Disconnect);
        assert_eq!(ok("1/admin,").namespace, "/admin");
        assert_eq!(ok(r#"4{"message":"x"}"#).kind, Kind::ConnectError);
        let p = ok(r#"51-["upload",{"_placeholder":true,"num":0}]"#);
        assert_eq!(
            (p.kind, p.event_name()),
            (Kind::BinaryEvent, Some("upload"))
        );
        assert_eq!(ok("61-3[{}]").id, Some(3));
    }

    #[test]
    fn malformed_packets_are_refused_with_the_reason() {
        // A connect carries an object or nothing; an event is an array whose first
        // element is not a reserved name; an acknowledgement is an array; a disconnect
        // carries nothing; a connect error, an object or a string.
        let payloads = [
            "0[]",
            "0\"x\"",
            "2[]",
            "2{}",
            "2",
            r#"2["disconnect"]"#,
            "3{}",
            "1{}",
            "4",
        ];
        // Data that is not JSON.
        let json = ["2[\"a\""];
        // An acknowledgement id a JavaScript number cannot hold exactly.
        let ack_ids = ["299999999999999999999[\"a\"]", "29007199254740992[\"a\"]"];
        // A binary packet names its attachments: `5<count>-`.
        let attachments = ["5[\"a\"]", "5x-[\"a\"]", "5-[\"a\"]"];
        // No packet type, or one that is not 0 to 6.
        let types = ["", "7", "é"];
        for (texts, error) in [
            (&payloads[..], DecodeError::InvalidPayload),
            (&json, DecodeError::InvalidJson),
            (&ack_ids, DecodeError::BadAckId),
            (&attachments, DecodeError::BadAttachments),
            (&types, DecodeError::UnknownType),
        ] {
            for &text in texts {
                assert_eq!(decode(text), Err(error), "{text:?}");
            }
        }
    }

    #[test]
    fn encoders_write_what_the_client_reads() {
        assert_eq!(encode_connect("/", "s1"), r#"0{"sid":"s1"}"#);
        assert_eq!(
            encode_connect_error("/admin", "Invalid namespace"),
            r#"4/admin,{"message":"Invalid namespace"}"#
        );
        assert_eq!(encode_ack("/", 12, &json!(["pong"])), r#"312["pong"]"#);
        assert_eq!(encode_ack("/x", 1, &json!([])), "3/x,1[]");
        assert_eq!(
            encode_event("business:created", Some(r#"{"id":1}"#)),
            r#"2["business:created",{"id":1}]"#
        );
        assert_eq!(encode_event("a\"b", None), r#"2["a\"b"]"#);
        for text in [
            encode_connect("/", "s1"),
            encode_connect_error("/admin", "Invalid namespace"),
            encode_ack("/", 12, &json!(["pong"])),
            encode_event("stats:updated", Some("{}")),
        ] {
            decode(&text).unwrap_or_else(|e| panic!("{text} reads back: {e}"));
        }
    }
}
