use super::*;
use crate::{EnrichmentStatus, MessageStatus};

fn err<T: std::fmt::Debug>(r: Result<T, ValidationError>) -> ValidationError {
    r.expect_err("input must be rejected")
}

/// The field named in the error that `parse` answers for `body`.
fn refused<T: std::fmt::Debug>(
    parse: fn(&[u8]) -> Result<T, ValidationError>,
    body: impl AsRef<[u8]>,
) -> String {
    err(parse(body.as_ref())).field
}

/// `field` is required text: a body without it, or with it blank, is refused by its name.
fn requires_text<T: std::fmt::Debug>(parse: fn(&[u8]) -> Result<T, ValidationError>, field: &str) {
    assert_eq!(refused(parse, "{}"), field);
    assert_eq!(refused(parse, format!(r#"{{"{field}": "   "}}"#)), field);
}

#[test]
fn a_new_business_needs_a_name_of_1_to_255_chars_after_trimming() {
    requires_text(NewBusiness::from_json, "name");
    let long = format!(r#"{{"name": "{}"}}"#, "x".repeat(256));
    assert_eq!(refused(NewBusiness::from_json, long), "name");
    let ok = NewBusiness::from_json(br#"{"name": "  Freehold Dental "}"#).expect("valid");
    assert_eq!(ok.name, "Freehold Dental");
    let max = format!(r#"{{"name": "{}"}}"#, "é".repeat(255));
    assert!(NewBusiness::from_json(max.as_bytes()).is_ok());
}

#[test]
fn only_the_name_and_indexed_columns_have_a_length_limit() {
    // The original API limited no other text field, and stored rows hold longer ones.
    let long = "x".repeat(300);
    let body = serde_json::json!({
        "name": "A", "city": long, "industry": long, "address": long, "zip": long,
        "phone": long, "business_type": long, "state": long, "source": long,
        "website": format!("https://example.com/{}", "p".repeat(3000)),
    });
    let b = NewBusiness::from_json(body.to_string().as_bytes()).expect("valid");
    assert_eq!(b.city.as_deref(), Some(long.as_str()));
    let p = BusinessPatch::from_json(body.to_string().as_bytes()).expect("valid");
    assert_eq!(p.industry, Some(Some(long.clone())));
    let c = serde_json::json!({"name": long, "title": long, "phone": long});
    assert!(NewContact::from_json(c.to_string().as_bytes()).is_ok());
    let m = serde_json::json!({"message_text": "y".repeat(20_000)});
    assert!(NewMessage::from_json(m.to_string().as_bytes()).is_ok());
}

#[test]
fn text_postgresql_cannot_store_is_refused_by_field() {
    for (body, field) in [
        (r#"{"name": "Nul\u0000Co"}"#, "name"),
        (r#"{"name": "A", "city": "x\u0000"}"#, "city"),
        (
            r#"{"name": "A", "website": "https://a.com/\u0000"}"#,
            "website",
        ),
        (r#"{"name": "A", "zip": "\ud800"}"#, "zip"),
    ] {
        let e = err(NewBusiness::from_json(body.as_bytes()));
        assert_eq!(e.field, field, "{body}");
        assert!(e.message.starts_with(field), "{}", e.message);
    }
    let e = err(BusinessPatch::from_json(br#"{"phone": "1\u00002"}"#));
    assert_eq!(e.field, "phone");
    assert!(e.message.contains("NUL"), "{}", e.message);
    let e = err(NewMessage::from_json(br#"{"message_text": "Hi\u0000"}"#));
    assert_eq!(e.field, "message_text");
    let e = err(NewContact::from_json(br#"{"title": "\u0000"}"#));
    assert_eq!(e.field, "title");
    let e = err(EnrichmentRun::from_json(
        br#"{"status": "failed", "contacts": [{}, {"name": "\u0000"}]}"#,
    ));
    assert_eq!(e.field, "contacts[1].name");
    let e = err(EnrichmentRun::from_json(
        br#"{"status": "failed", "logs": [{"service": "s", "status": "ok", "request_data": "a\u0000"}]}"#,
    ));
    assert_eq!(e.field, "logs[0].request_data");
    // Inside JSON that is stored as its text, a NUL is escaped and so is storable.
    let run = EnrichmentRun::from_json(
        br#"{"status": "failed", "logs": [{"service": "s", "status": "ok", "request_data": {"a": "\u0000"}}]}"#,
    )
    .expect("valid");
    assert_eq!(
        run.logs
            .first()
            .and_then(NewEnrichmentLog::request_text)
            .as_deref(),
        Some(r#"{"a":"\u0000"}"#)
    );
}

#[test]
fn indexed_columns_take_at_most_600_characters() {
    let ok = serde_json::json!({"name": "A", "city": "é".repeat(600)}).to_string();
    assert!(NewBusiness::from_json(ok.as_bytes()).is_ok());
    for field in ["city", "industry"] {
        let body = serde_json::json!({"name": "A", field: "x".repeat(601)}).to_string();
        assert_eq!(refused(NewBusiness::from_json, &body), field);
        assert_eq!(refused(BusinessPatch::from_json, &body), field);
    }
    let body = serde_json::json!({"status": "failed", "logs": [
        {"service": "s".repeat(601), "status": "ok"}]})
    .to_string();
    assert_eq!(refused(EnrichmentRun::from_json, body), "logs[0].service");
}

#[test]
fn read_only_and_unknown_fields_are_rejected_by_name() {
    for field in ["id", "created_at", "updated_at", "enrichment_status"] {
        let body = format!(r#"{{"name": "A", "{field}": 1}}"#);
        let e = err(NewBusiness::from_json(body.as_bytes()));
        assert_eq!(e.field, field);
        assert!(e.message.contains(field), "{}", e.message);
        let e = err(BusinessPatch::from_json(body.as_bytes()));
        assert_eq!(e.field, field);
    }
    let e = err(NewBusiness::from_json(br#"{"name": "A", "colour": "red"}"#));
    assert_eq!(e.message, "property colour should not exist");
}

#[test]
fn wrong_types_and_malformed_json_name_the_problem() {
    let e = err(NewBusiness::from_json(
        br#"{"name": "A", "employee_count": "ten"}"#,
    ));
    assert_eq!(e.field, "employee_count");
    assert!(e.message.starts_with("employee_count"), "{}", e.message);
    assert_eq!(refused(NewBusiness::from_json, b"{not json"), "body");
    assert_eq!(refused(NewBusiness::from_json, b"[1]"), "body");
    assert_eq!(refused(NewBusiness::from_json, b""), "body");
    let e = err(NewBusiness::from_json(br#"{"name": 5}"#));
    assert_eq!(e.field, "name");
}

#[test]
fn integers_may_be_sent_as_integral_floats() {
    let b =
        NewBusiness::from_json(br#"{"name": "A", "year_founded": 1995.0, "employee_count": 1e3}"#)
            .expect("valid");
    assert_eq!((b.year_founded, b.employee_count), (Some(1995), Some(1000)));
    let p = BusinessPatch::from_json(br#"{"year_founded": 2000.0, "employee_count": null}"#)
        .expect("valid");
    assert_eq!(
        (p.year_founded, p.employee_count),
        (Some(Some(2000)), Some(None))
    );
    for bad in [r#""ten""#, "1.5", "3000000000", "true"] {
        let body = format!(r#"{{"name": "A", "employee_count": {bad}}}"#);
        let e = err(NewBusiness::from_json(body.as_bytes()));
        assert_eq!(e.field, "employee_count", "{bad}");
        assert!(e.message.contains("expected i32"), "{}", e.message);
    }
    let m = NewMessage::from_json(br#"{"message_text": "Hi", "contact_id": 4.0}"#).expect("ok");
    assert_eq!(m.contact_id, Some(4));
}

#[test]
fn enrichment_items_must_be_objects() {
    let e = err(EnrichmentRun::from_json(
        br#"{"status": "failed", "contacts": [{}, [null, null]]}"#,
    ));
    assert_eq!(e.field, "contacts[1]");
    let e = err(EnrichmentRun::from_json(
        br#"{"status": "failed", "logs": ["x"]}"#,
    ));
    assert_eq!(e.field, "logs[0]");
}

#[test]
fn website_must_be_an_http_url() {
    for bad in [
        "example.com",
        "ftp://example.com",
        "javascript:alert(1)",
        "http://",
    ] {
        let body = serde_json::json!({"name": "A", "website": bad}).to_string();
        assert_eq!(refused(NewBusiness::from_json, body), "website", "{bad}");
    }
    for good in ["http://example.com", "https://example.com/path?q=1"] {
        let body = serde_json::json!({"name": "A", "website": good}).to_string();
        assert!(NewBusiness::from_json(body.as_bytes()).is_ok(), "{good}");
    }
}

#[test]
fn numbers_out_of_range_are_rejected() {
    for (field, value) in [
        ("employee_count", serde_json::json!(-1)),
        ("year_founded", serde_json::json!(3000)),
        ("latitude", serde_json::json!(91.0)),
        ("longitude", serde_json::json!(-181)),
    ] {
        let body = serde_json::json!({"name": "A", field: value}).to_string();
        assert_eq!(refused(NewBusiness::from_json, body), field);
    }
}

#[test]
fn a_patch_tells_absent_from_null_and_refuses_to_clear_required_fields() {
    let p = BusinessPatch::from_json(br#"{"city": null, "industry": "Dental"}"#).expect("ok");
    assert_eq!(p.city, Some(None));
    assert_eq!(p.industry, Some(Some("Dental".into())));
    assert_eq!(p.name, None);
    assert!(
        BusinessPatch::from_json(b"{}")
            .expect("empty patch")
            .is_empty()
    );
    for field in ["name", "state", "source"] {
        let body = format!(r#"{{"{field}": null}}"#);
        assert_eq!(refused(BusinessPatch::from_json, body), field);
    }
    assert_eq!(
        refused(BusinessPatch::from_json, br#"{"name": ""}"#),
        "name"
    );
}

#[test]
fn contacts_need_a_valid_email_when_one_is_given() {
    assert!(NewContact::from_json(b"{}").is_ok());
    assert!(NewContact::from_json(br#"{"email": "jane@freehold-dental.com"}"#).is_ok());
    for bad in ["jane", "jane@", "@x.com", "jane@localhost", "a b@c.com"] {
        let body = serde_json::json!({ "email": bad }).to_string();
        assert_eq!(refused(NewContact::from_json, body), "email", "{bad}");
    }
    assert_eq!(refused(NewContact::from_json, br#"{"id": 3}"#), "id");
}

#[test]
fn an_enrichment_run_records_enriched_or_failed_only() {
    let run = EnrichmentRun::from_json(
        br#"{"status": "enriched", "contacts": [{"email": "a@b.co"}],
             "logs": [{"service": "hunter", "status": "ok", "request_data": {"q": 1}}]}"#,
    )
    .expect("valid");
    assert_eq!(run.status(), EnrichmentStatus::Enriched);
    assert_eq!(run.logs.len(), 1);
    assert_eq!(
        run.logs.first().and_then(NewEnrichmentLog::request_text),
        Some(r#"{"q":1}"#.to_owned())
    );
    assert_eq!(
        refused(EnrichmentRun::from_json, br#"{"status": "pending"}"#),
        "status"
    );
    assert_eq!(refused(EnrichmentRun::from_json, b"{}"), "status");
    let e = err(EnrichmentRun::from_json(
        br#"{"status": "failed", "contacts": [{"email": "nope"}]}"#,
    ));
    assert_eq!(e.field, "contacts[0].email");
    let e = err(EnrichmentRun::from_json(
        br#"{"status": "failed", "logs": [{"service": "x"}]}"#,
    ));
    assert!(e.field.contains("status"), "{e:?}");
}

#[test]
fn log_data_is_stored_as_text_a_string_verbatim() {
    let run = EnrichmentRun::from_json(
        br#"{"status": "enriched", "logs": [
            {"service": "a", "status": "ok", "request_data": "not {json",
             "response_data": {"z": 1, "a": [true, null]}},
            {"service": "b", "status": "ok", "request_data": null, "response_data": 42}]}"#,
    )
    .expect("valid");
    let [a, b] = run.logs.as_slice() else {
        panic!("two logs")
    };
    assert_eq!(a.request_text().as_deref(), Some("not {json"));
    // Keys keep the order they were sent in, as JSON.stringify writes them.
    assert_eq!(
        a.response_text().as_deref(),
        Some(r#"{"z":1,"a":[true,null]}"#)
    );
    assert_eq!(b.request_text(), None);
    assert_eq!(b.response_text().as_deref(), Some("42"));
}

#[test]
fn messages_need_text_and_move_only_to_sent_or_failed() {
    requires_text(NewMessage::from_json, "message_text");
    let m = NewMessage::from_json(br#"{"message_text": "Hi", "contact_id": 4}"#).expect("ok");
    assert_eq!(m.contact_id, Some(4));
    let s = MessageStatusUpdate::from_json(br#"{"status": "sent"}"#).expect("ok");
    assert_eq!(s.status(), MessageStatus::Sent);
    assert_eq!(
        refused(
            MessageStatusUpdate::from_json,
            br#"{"status": "generated"}"#
        ),
        "status"
    );
    assert_eq!(
        refused(MessageStatusUpdate::from_json, br#"{"status": "bogus"}"#),
        "status"
    );
}
