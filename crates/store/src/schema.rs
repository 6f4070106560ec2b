//! Diesel's view of the tables in `migrations/`: the original backend's schema. Every
//! timestamp is `TIMESTAMP(3)` without time zone holding UTC.

diesel::table! {
    business (id) {
        id -> Int4,
        name -> Text,
        address -> Nullable<Text>,
        city -> Nullable<Text>,
        state -> Nullable<Text>,
        zip -> Nullable<Text>,
        phone -> Nullable<Text>,
        website -> Nullable<Text>,
        business_type -> Nullable<Text>,
        industry -> Nullable<Text>,
        employee_count -> Nullable<Int4>,
        year_founded -> Nullable<Int4>,
        google_maps_url -> Nullable<Text>,
        latitude -> Nullable<Float8>,
        longitude -> Nullable<Float8>,
        enrichment_status -> Text,
        source -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    contact (id) {
        id -> Int4,
        business_id -> Int4,
        name -> Nullable<Text>,
        title -> Nullable<Text>,
        email -> Nullable<Text>,
        email_verified -> Nullable<Bool>,
        phone -> Nullable<Text>,
        linkedin_url -> Nullable<Text>,
        is_primary -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    enrichment_log (id) {
        id -> Int4,
        business_id -> Int4,
        service -> Text,
        status -> Text,
        request_data -> Nullable<Text>,
        response_data -> Nullable<Text>,
        error_message -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    outreach_message (id) {
        id -> Int4,
        business_id -> Int4,
        contact_id -> Nullable<Int4>,
        message_text -> Text,
        generated_at -> Timestamp,
        sent_at -> Nullable<Timestamp>,
        status -> Text,
    }
}

diesel::joinable!(contact -> business (business_id));
diesel::joinable!(enrichment_log -> business (business_id));
diesel::joinable!(outreach_message -> business (business_id));
diesel::allow_tables_to_appear_in_same_query!(business, contact, enrichment_log, outreach_message);
