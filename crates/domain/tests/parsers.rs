//! Property tests of every parser of outside input: whatever arrives, a parser answers a
//! validated value or an error that names what is wrong; it never panics, and what it
//! accepts is within the contract's bounds.

use letip_domain::{
    BusinessPatch, EnrichmentRun, ListQuery, MessageStatusUpdate, NewBusiness, NewContact,
    NewMessage, ValidationError,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Errors name a field (or the body) in their message.
fn well_formed(e: &ValidationError) -> bool {
    let last = e.field.rsplit('.').next().unwrap_or(&e.field);
    let last = last.split('[').next().unwrap_or(last);
    !e.message.is_empty() && (e.field == "body" || e.message.contains(last))
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("name".to_owned()),
                    Just("city".to_owned()),
                    Just("website".to_owned()),
                    Just("email".to_owned()),
                    Just("status".to_owned()),
                    Just("contacts".to_owned()),
                    Just("logs".to_owned()),
                    Just("message_text".to_owned()),
                    Just("contact_id".to_owned()),
                    Just("employee_count".to_owned()),
                    Just("id".to_owned()),
                    "[a-z_]{1,12}",
                ],
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check<T>(r: Result<T, ValidationError>) -> Result<(), TestCaseError> {
    if let Err(e) = r {
        prop_assert!(well_formed(&e), "{e:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn body_parsers_never_panic_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        check(NewBusiness::from_json(&bytes))?;
        check(BusinessPatch::from_json(&bytes))?;
        check(NewContact::from_json(&bytes))?;
        check(EnrichmentRun::from_json(&bytes))?;
        check(NewMessage::from_json(&bytes))?;
        check(MessageStatusUpdate::from_json(&bytes))?;
    }

    #[test]
    fn body_parsers_name_the_field_of_any_json(v in json_value()) {
        let bytes = serde_json::to_vec(&v).expect("serializable");
        check(NewBusiness::from_json(&bytes))?;
        check(BusinessPatch::from_json(&bytes))?;
        check(NewContact::from_json(&bytes))?;
        check(EnrichmentRun::from_json(&bytes))?;
        check(NewMessage::from_json(&bytes))?;
        check(MessageStatusUpdate::from_json(&bytes))?;
    }

    #[test]
    fn accepted_businesses_are_within_bounds(
        name in "\\PC{0,300}",
        employees in proptest::option::of(any::<i32>()),
        lat in proptest::option::of(-200.0f64..200.0),
        website in proptest::option::of(prop_oneof!["https://[a-z]{1,10}\\.com", "\\PC{0,20}"]),
    ) {
        let body = json!({"name": name, "employee_count": employees, "latitude": lat, "website": website});
        match NewBusiness::from_json(body.to_string().as_bytes()) {
            Ok(b) => {
                prop_assert!(!b.name.is_empty() && b.name.chars().count() <= 255);
                prop_assert_eq!(b.name.trim(), b.name.as_str());
                prop_assert!(b.employee_count.is_none_or(|e| (0..=10_000_000).contains(&e)));
                prop_assert!(b.latitude.is_none_or(|l| (-90.0..=90.0).contains(&l)));
                prop_assert!(b.website.as_deref().is_none_or(|w| w.starts_with("http")));
            }
            Err(e) => prop_assert!(well_formed(&e), "{e:?}"),
        }
    }

    #[test]
    fn list_queries_are_within_bounds_or_rejected_by_name(
        pairs in proptest::collection::vec(
            (
                prop_oneof![
                    Just("city".to_owned()), Just("industry".to_owned()),
                    Just("enrichment_status".to_owned()), Just("page".to_owned()),
                    Just("limit".to_owned()), "[a-z]{1,6}",
                ],
                prop_oneof!["[0-9]{0,7}", "-?[0-9]{1,3}", "\\PC{0,20}", Just("enriched".to_owned())],
            ),
            0..6,
        )
    ) {
        match ListQuery::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
            Ok(q) => {
                prop_assert!((1..=100_000).contains(&q.page));
                prop_assert!((1..=100).contains(&q.limit));
                prop_assert!(q.offset() >= 0);
            }
            Err(e) => {
                prop_assert!(pairs.iter().any(|(k, _)| *k == e.field), "{e:?}");
                prop_assert!(e.message.starts_with(&e.field));
            }
        }
    }
}
