//! Property tests of the Engine.IO and Socket.IO parsers: whatever arrives, they answer
//! a packet or an error, never panic, and what the server writes reads back as written.

use letip_api::socketio::engine::{self, Packet};
use letip_api::socketio::packet::{self, Kind};
use proptest::prelude::*;
use serde_json::{Value, json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("\\PC{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn no_text_makes_a_parser_panic(text in "\\PC{0,64}|[0-6b/,\\[\\]{}\"0-9\\x1e-]{0,32}") {
        let _ = engine::decode_packet(&text);
        let _ = engine::decode_payload(&text).count();
        let _ = engine::parse_query(&text);
        let _ = packet::decode(&text);
    }

    #[test]
    fn events_read_back_with_their_name_and_data(name in "\\PC{1,30}", data in json_value()) {
        prop_assume!(!packet::RESERVED_EVENTS.contains(&name.as_str()));
        let text = packet::encode_event(&name, Some(&data.to_string()));
        let p = packet::decode(&text).expect("an encoded event reads back");
        prop_assert_eq!(p.kind, Kind::Event);
        prop_assert_eq!(p.namespace, "/");
        prop_assert_eq!(p.event_name(), Some(name.as_str()));
        prop_assert_eq!(p.data, Some(json!([name, data])));
    }

    #[test]
    fn acknowledgements_read_back(
        id in 0u64..(1 << 53),
        args in prop::collection::vec(json_value(), 0..3),
    ) {
        let text = packet::encode_ack("/", id, &Value::from(args.clone()));
        let p = packet::decode(&text).expect("an encoded ack reads back");
        prop_assert_eq!((p.kind, p.id), (Kind::Ack, Some(id)));
        prop_assert_eq!(p.data, Some(Value::from(args)));
    }

    #[test]
    fn payloads_split_into_the_packets_joined(
        messages in prop::collection::vec("[^\\x1e]{0,20}", 1..6),
    ) {
        let packets: Vec<String> = messages.iter().map(|m| Packet::Message(m).encode()).collect();
        let payload = engine::encode_payload(&packets);
        let read: Vec<_> = engine::decode_payload(&payload).collect();
        let expected: Vec<_> = messages.iter().map(|m| Ok(Packet::Message(m))).collect();
        prop_assert_eq!(read, expected);
    }
}
