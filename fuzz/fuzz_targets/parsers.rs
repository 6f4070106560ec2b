//! Every body and query parser of the API, on arbitrary bytes: none may panic, a
//! rejection always names a field and says what is wrong, and what is accepted holds
//! the contract's bounds and holds no text PostgreSQL cannot store (NUL). The Engine.IO
//! and Socket.IO parsers too, and a Socket.IO session fed arbitrary packets: no panic,
//! and its queue stays bounded.

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
        assert!(
            e.field == "body" || e.message.contains(e.field.as_str()),
            "an error names its field: {e:?}"
        );
    }
}

fn storable<'a>(texts: impl IntoIterator<Item = Option<&'a String>>) {
    for t in texts.into_iter().flatten() {
        assert!(!t.contains('\0'), "text with NUL accepted: {t:?}");
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
                storable([
                    Some(&b.name),
                    b.address.as_ref(),
                    b.city.as_ref(),
                    b.state.as_ref(),
                    b.zip.as_ref(),
                    b.phone.as_ref(),
                    b.website.as_ref(),
                    b.business_type.as_ref(),
                    b.industry.as_ref(),
                    b.google_maps_url.as_ref(),
                    b.source.as_ref(),
                ]);
            }
        }
        1 => rejected_clearly(&BusinessPatch::from_json(input)),
        2 => {
            let r = NewContact::from_json(input);
            rejected_clearly(&r);
            if let Ok(c) = r {
                storable([&c.name, &c.title, &c.email, &c.phone, &c.linkedin_url].map(Option::as_ref));
            }
        }
        3 => {
            let r = EnrichmentRun::from_json(input);
            rejected_clearly(&r);
            for log in r.iter().flat_map(|run| &run.logs) {
                let (request, response) = (log.request_text(), log.response_text());
                storable([Some(&log.service), Some(&log.status), request.as_ref(), response.as_ref()]);
            }
        }
        4 => {
            let r = NewMessage::from_json(input);
            rejected_clearly(&r);
            if let Ok(m) = r {
                storable([Some(&m.message_text)]);
            }
        }
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
            // The server hands the raw query string over; actix has made it a `&str`.
            let r = ListQuery::from_query(&String::from_utf8_lossy(input));
            rejected_clearly(&r);
            if let Ok(q) = r {
                assert!((1..=100).contains(&q.limit), "limit {} accepted", q.limit);
                assert!((1..=MAX_PAGE).contains(&q.page), "page {} accepted", q.page);
                storable([q.filter.city.as_ref(), q.filter.industry.as_ref()]);
            }
        }
    }
});
