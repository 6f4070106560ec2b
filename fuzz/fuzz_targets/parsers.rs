//! Every body and query parser of the API, on arbitrary bytes: none may panic, a
//! rejection always names a field and says what is wrong, and what is accepted holds
//! the contract's bounds.

#![no_main]

use letip_domain::query::MAX_PAGE;
use letip_domain::{
    BusinessPatch, EnrichmentRun, ListQuery, MessageStatusUpdate, NewBusiness, NewContact,
    NewMessage, ValidationError,
};
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
    match which % 7 {
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
