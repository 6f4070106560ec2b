//! Handlers of the lead routes. Each parses its input, makes one repository call and
//! maps the answer; nothing else happens here.

use actix_web::http::header::{CONTENT_TYPE, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use letip_domain::{
    Body, BusinessDetail, BusinessPage, BusinessPatch, EnrichmentRun, Fetched, ListQuery,
    MessageStatusUpdate, NewBusiness, NewContact, NewMessage, Stats,
};
use serde::Serialize;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, parse_id};

/// The header that tells where a cacheable read was answered from.
pub const X_CACHE: &str = "x-cache";

/// Answers a read with its cache status, passing cached JSON through untouched.
fn cached<T: Serialize>(fetched: Fetched<T>) -> HttpResponse {
    let mut res = HttpResponse::Ok();
    res.insert_header((X_CACHE, fetched.cache.as_str()));
    match fetched.body {
        Body::Typed(value) => res.json(value),
        Body::Json(bytes) => res
            .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
            .body(bytes),
    }
}

fn query(req: &HttpRequest) -> Result<ListQuery, ApiError> {
    let pairs = url::form_urlencoded::parse(req.query_string().as_bytes());
    Ok(ListQuery::from_pairs(pairs)?)
}

/// Lists businesses with their contacts, newest first.
#[utoipa::path(
    get, path = "/api/businesses", tag = "businesses",
    params(
        ("city" = Option<String>, Query, description = "exact city"),
        ("industry" = Option<String>, Query, description = "exact industry"),
        ("enrichment_status" = Option<String>, Query, description = "pending, enriched or failed"),
        ("page" = Option<u32>, Query, description = "1-based page, default 1"),
        ("limit" = Option<u32>, Query, description = "1 to 100, default 20"),
    ),
    responses(
        (status = 200, body = BusinessPage, headers(("X-Cache" = String, description = "HIT, MISS or BYPASS"))),
        (status = 400, body = ErrorBody),
    )
)]
pub async fn list_businesses(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q = query(&req)?;
    Ok(cached(state.repo.list_businesses(&q).await?))
}

/// The dashboard's counters.
#[utoipa::path(
    get, path = "/api/businesses/stats", tag = "businesses",
    responses((status = 200, body = Stats, headers(("X-Cache" = String, description = "HIT, MISS or BYPASS"))))
)]
pub async fn stats(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(cached(state.repo.stats().await?))
}

/// One business with its contacts, 10 newest enrichment logs and 5 newest messages.
#[utoipa::path(
    get, path = "/api/businesses/{id}", tag = "businesses",
    params(("id" = i32, Path)),
    responses(
        (status = 200, body = BusinessDetail, headers(("X-Cache" = String, description = "HIT, MISS or BYPASS"))),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
    )
)]
pub async fn business_detail(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("id", &id)?;
    Ok(cached(state.repo.business_detail(id).await?))
}

/// Creates a business.
#[utoipa::path(
    post, path = "/api/businesses", tag = "businesses",
    request_body = NewBusiness,
    responses((status = 201, body = letip_domain::Business), (status = 400, body = ErrorBody))
)]
pub async fn create_business(
    state: web::Data<AppState>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let new = NewBusiness::from_json(&body.0)?;
    Ok(HttpResponse::Created().json(state.repo.create_business(new).await?))
}

/// Changes some fields of a business; `null` clears a nullable field.
#[utoipa::path(
    patch, path = "/api/businesses/{id}", tag = "businesses",
    params(("id" = i32, Path)),
    request_body = BusinessPatch,
    responses(
        (status = 200, body = letip_domain::Business),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
    )
)]
pub async fn update_business(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("id", &id)?;
    let patch = BusinessPatch::from_json(&body.0)?;
    Ok(HttpResponse::Ok().json(state.repo.update_business(id, patch).await?))
}

/// Deletes a business with its contacts, logs and messages.
#[utoipa::path(
    delete, path = "/api/businesses/{id}", tag = "businesses",
    params(("id" = i32, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn delete_business(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("id", &id)?;
    state.repo.delete_business(id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Records the outcome of one enrichment run in one transaction.
#[utoipa::path(
    post, path = "/api/enrich/{id}", tag = "enrichment",
    params(("id" = i32, Path)),
    request_body = EnrichmentRun,
    responses(
        (status = 200, body = BusinessDetail),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
    )
)]
pub async fn enrich(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("id", &id)?;
    let run = EnrichmentRun::from_json(&body.0)?;
    Ok(HttpResponse::Ok().json(state.repo.enrich(id, run).await?))
}

/// Adds a contact to a business.
#[utoipa::path(
    post, path = "/api/businesses/{id}/contacts", tag = "contacts",
    params(("id" = i32, Path)),
    request_body = NewContact,
    responses(
        (status = 201, body = letip_domain::Contact),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
    )
)]
pub async fn create_contact(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("id", &id)?;
    let new = NewContact::from_json(&body.0)?;
    Ok(HttpResponse::Created().json(state.repo.create_contact(id, new).await?))
}

/// Deletes a contact; messages addressed to it keep their text with no contact.
#[utoipa::path(
    delete, path = "/api/contacts/{id}", tag = "contacts",
    params(("id" = i32, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn delete_contact(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("id", &id)?;
    state.repo.delete_contact(id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Adds a generated outreach message to a business.
#[utoipa::path(
    post, path = "/api/businesses/{id}/messages", tag = "messages",
    params(("id" = i32, Path)),
    request_body = NewMessage,
    responses(
        (status = 201, body = letip_domain::OutreachMessage),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
    )
)]
pub async fn create_message(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("id", &id)?;
    let new = NewMessage::from_json(&body.0)?;
    Ok(HttpResponse::Created().json(state.repo.create_message(id, new).await?))
}

/// Moves a message to `sent` (setting `sent_at`) or `failed`.
#[utoipa::path(
    patch, path = "/api/messages/{id}", tag = "messages",
    params(("id" = i32, Path)),
    request_body = MessageStatusUpdate,
    responses(
        (status = 200, body = letip_domain::OutreachMessage),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
    )
)]
pub async fn update_message(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("id", &id)?;
    let update = MessageStatusUpdate::from_json(&body.0)?;
    Ok(HttpResponse::Ok().json(state.repo.update_message_status(id, update).await?))
}
