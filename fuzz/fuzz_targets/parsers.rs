//! Every body and query parser of the API, on arbitrary bytes: none may panic, a
//! rejection always names a field and says what is wrong, and what is accepted holds
//! the contract's bounds. The Engine.IO and Socket.IO parsers too, and a Socket.IO
//! session fed arbitrary packets: no panic, and its queue stays bounded.

#![no_main]

use letip_domain::query::MAX_PAGE;
use letip_domain::{
    BusinessPatch, EnrichmentRun, ListQuery, MessageStatusUpdate, NewBusiness, NewContact,
    NewMessage, ValidationError,
};
use letip_api::socketio::engine::{self, Transport};
use letip_api::socketio::packet;
use letip_api::socketio::session::{MAX_CONTROL, Session, Timing, Via};
use libfuzzer_sys::fuzz_target;

fn rejected_clearly<T>(result: &Result<T, ValidationError>) {
    if let Err(e) = result {
        assert!(!e.message.is_empty(), "an error says what is wrong");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, input)) = data.split_first() else {
        return;
    };
    match which % 10 {
        0 => {
            let r = NewBusiness::from_json(input);
            rejected_clearly(&r);
            if let Ok(b) = r {
                let len = b.name.trim().chars().count();
                assert!(
                    (1..=255).contains(&len),
                    "name of {len} characters accepted"
                );
            }
        }
        1 => rejected_clearly(&BusinessPatch::from_json(input)),
        2 => rejected_clearly(&NewContact::from_json(input)),
        3 => rejected_clearly(&EnrichmentRun::from_json(input)),
        4 => rejected_clearly(&NewMessage::from_json(input)),
        5 => rejected_clearly(&MessageStatusUpdate::from_json(input)),
        7 => {
            let Ok(text) = std::str::from_utf8(input) else {
                return;
            };
            for p in engine::decode_payload(text).flatten() {
                // What is read writes back as it was read (binary data aside).
                if !matches!(p, engine::Packet::Binary) {
                    assert_eq!(engine::decode_packet(&p.encode()), Ok(p));
                }
            }
            let _ = engine::parse_query(text);
        }
        8 => {
            let Ok(text) = std::str::from_utf8(input) else {
                return;
            };
            if let Ok(p) = packet::decode(text) {
                assert!(p.namespace.starts_with('/'), "namespace {:?}", p.namespace);
                if p.kind == packet::Kind::Event {
                    assert!(p.data.as_ref().is_some_and(|d| d.is_array()));
                }
            }
        }
        9 => {
            let Ok(text) = std::str::from_utf8(input) else {
                return;
            };
            let now = std::time::Instant::now();
            let transport = if text.len() % 2 == 0 {
                Transport::Polling
            } else {
                Transport::WebSocket
            };
            let mut s = Session::new("fuzz".into(), transport, Timing::default(), 1000, now);
            let _ = s.begin_upgrade(now);
            for (i, p) in text.split(engine::SEPARATOR).enumerate() {
                let via = if i % 3 == 2 { Via::Probe } else { Via::Main };
                if s.receive(p, via, now).is_err() {
                    break;
                }
            }
            let mut queued = 0;
            while s.pop_control().is_some() {
                queued += 1;
            }
            assert!(queued <= MAX_CONTROL, "{queued} packets queued");
        }
        _ => {
            let r = ListQuery::from_pairs(url::form_urlencoded::parse(input));
            rejected_clearly(&r);
            if let Ok(q) = r {
                assert!((1..=100).contains(&q.limit), "limit {} accepted", q.limit);
                assert!((1..=MAX_PAGE).contains(&q.page), "page {} accepted", q.page);
            }
        }
    }
});
