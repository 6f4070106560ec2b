//! What a cache hit costs beyond fetching the bytes: decoding the cached JSON into typed
//! values and encoding it again (what a typed cache would do on every hit), against the
//! syntax check the cached repository does instead, on a list page of 20 businesses.
//!
//! ```sh
//! cargo bench -p letip-service --bench hit_path
//! ```

// Printing its results is what this program is for.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::Utc;
use letip_domain::{
    Business, BusinessPage, BusinessWithContacts, Contact, EnrichmentStatus, PageMeta,
};
use serde::de::IgnoredAny;

fn page() -> BusinessPage {
    let now = Utc::now();
    let data = (0..20)
        .map(|i| BusinessWithContacts {
            business: Business {
                id: 1000 + i,
                name: format!("Freehold Family Dental #{i}"),
                address: Some("1755 Washington St".into()),
                city: Some("Freehold".into()),
                state: Some("NJ".into()),
                zip: Some("07728".into()),
                phone: Some("(732) 555-0101".into()),
                website: Some(format!("https://www.freeholdfamilydental{i}.com")),
                business_type: Some("dentist".into()),
                industry: Some("Dental".into()),
                employee_count: Some(12),
                year_founded: Some(1998),
                google_maps_url: Some("https://maps.google.com/?cid=903190305498971485".into()),
                latitude: Some(40.2601),
                longitude: Some(-74.2738),
                enrichment_status: EnrichmentStatus::Enriched.into(),
                source: "google_maps".into(),
                created_at: now,
                updated_at: now,
            },
            contacts: (0..2)
                .map(|c| Contact {
                    id: 5000 + i * 2 + c,
                    business_id: 1000 + i,
                    name: Some("Jennifer Esposito".into()),
                    title: Some("Office Manager".into()),
                    email: Some("jennifer.esposito@freeholdfamilydental.com".into()),
                    email_verified: Some(true),
                    phone: Some("(732) 555-0199".into()),
                    linkedin_url: Some("https://www.linkedin.com/in/jennifer-esposito".into()),
                    is_primary: c == 0,
                    created_at: now,
                    updated_at: now,
                })
                .collect(),
        })
        .collect();
    BusinessPage {
        data,
        meta: PageMeta::new(1_000_000, 1, 20),
    }
}

fn measure(name: &str, bytes: usize, mut f: impl FnMut()) {
    for _ in 0..200 {
        f();
    }
    let mut runs = 0u32;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        f();
        runs += 1;
    }
    let per = start.elapsed() / runs;
    let mb_s = bytes as f64 / per.as_secs_f64() / 1e6;
    println!(
        "{name:<40} {:>10.2} µs/op {mb_s:>10.0} MB/s",
        per.as_secs_f64() * 1e6
    );
}

fn main() {
    let json = serde_json::to_vec(&page()).expect("a page serializes");
    println!(
        "list page of 20 businesses with 2 contacts each: {} bytes\n",
        json.len()
    );
    measure("decode to BusinessPage + encode again", json.len(), || {
        let page: BusinessPage = serde_json::from_slice(black_box(&json)).expect("decodes");
        black_box(serde_json::to_vec(&page).expect("encodes"));
    });
    measure("decode to BusinessPage only", json.len(), || {
        black_box(serde_json::from_slice::<BusinessPage>(black_box(&json)).expect("decodes"));
    });
    measure("CRC-32 check (what a Redis hit does)", json.len(), || {
        black_box(crc32fast::hash(black_box(&json)));
    });
    measure(
        "syntax check (a cache without checksums)",
        json.len(),
        || {
            black_box(serde_json::from_slice::<IgnoredAny>(black_box(&json)).expect("valid"));
        },
    );
}
