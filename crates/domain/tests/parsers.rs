//! Property tests of every parser of outside input: whatever arrives, a parser answers a
//! validated value or an error that names what is wrong; it never panics, and what it
//! accepts is within the contract's bounds and holds only text PostgreSQL can store.

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
        // NUL, which PostgreSQL text cannot hold, among ordinary characters.
        "[a\u{0}é]{0,6}".prop_map(Value::from),
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

/// Runs every body parser on `bytes`: each must answer without panicking, and any error
/// must be well formed.
fn check_all_bodies(bytes: &[u8]) -> Result<(), TestCaseError> {
    check(NewBusiness::from_json(bytes))?;
    check(BusinessPatch::from_json(bytes))?;
    check(NewContact::from_json(bytes))?;
    check(EnrichmentRun::from_json(bytes))?;
    check(NewMessage::from_json(bytes))?;
    check(MessageStatusUpdate::from_json(bytes))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn body_parsers_never_panic_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        check_all_bodies(&bytes)?;
    }

    #[test]
    fn body_parsers_name_the_field_of_any_json(v in json_value()) {
        let bytes = serde_json::to_vec(&v).expect("serializable");
        check_all_bodies(&bytes)?;
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
    fn text_with_nul_or_unpaired_surrogates_is_refused_by_field(
        field in prop_oneof![
            Just("name"), Just("address"), Just("city"), Just("state"), Just("zip"),
            Just("phone"), Just("website"), Just("business_type"), Just("industry"),
            Just("google_maps_url"), Just("source"),
        ],
        before in "[a-z]{0,5}",
        after in "[a-z]{0,5}",
        fault in prop_oneof![Just("\\u0000"), Just("\\ud800"), Just("\\udfff"), Just("\\ud83d\\u0041")],
    ) {
        // Written as JSON text: serde_json cannot build a string with a lone surrogate.
        let name = if field == "name" { String::new() } else { r#""name": "A", "#.to_owned() };
        let body = format!(r#"{{{name}"{field}": "https://{before}{fault}{after}"}}"#);
        for e in [
            NewBusiness::from_json(body.as_bytes()).expect_err("refused"),
            BusinessPatch::from_json(body.as_bytes()).expect_err("refused"),
        ] {
            prop_assert_eq!(e.field.as_str(), field, "{}: {:?}", body, e);
            prop_assert!(e.message.starts_with(field), "{}", e.message);
        }
    }

    #[test]
    fn accepted_bodies_hold_no_nul(v in json_value()) {
        let bytes = serde_json::to_vec(&v).expect("serializable");
        if let Ok(b) = NewBusiness::from_json(&bytes) {
            let texts = [Some(&b.name), b.address.as_ref(), b.city.as_ref(), b.state.as_ref(),
                b.zip.as_ref(), b.phone.as_ref(), b.website.as_ref(), b.business_type.as_ref(),
                b.industry.as_ref(), b.google_maps_url.as_ref(), b.source.as_ref()];
            prop_assert!(texts.iter().flatten().all(|t| !t.contains('\0')), "{b:?}");
        }
        if let Ok(c) = NewContact::from_json(&bytes) {
            let texts = [&c.name, &c.title, &c.email, &c.phone, &c.linkedin_url];
            prop_assert!(texts.iter().copied().flatten().all(|t| !t.contains('\0')), "{c:?}");
        }
        if let Ok(m) = NewMessage::from_json(&bytes) {
            prop_assert!(!m.message_text.contains('\0'));
        }
    }

    #[test]
    fn raw_queries_never_panic_and_hold_no_nul(raw in "[a-z=&%+0-9A-F\u{0}é]{0,40}") {
        match ListQuery::from_query(&raw) {
            Ok(q) => {
                prop_assert!((1..=100).contains(&q.limit));
                prop_assert!(q.filter.city.iter().chain(&q.filter.industry).all(|t| !t.contains('\0')));
            }
            Err(e) => prop_assert!(e.message.starts_with(&e.field), "{e:?}"),
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
