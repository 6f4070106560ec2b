//! Handlers of the lead routes. Each parses its input, makes one repository call and
//! maps the answer; nothing else happens here.

//!
//! Each `#[utoipa::path]` lists the answers particular to its operation; the document
//! assembly ([`crate::ApiDoc`]) adds those every operation shares (413 wherever a body is
//! read, 500 and 503 on every route that reads the database).

use actix_web::http::StatusCode;
use actix_web::http::header::{AGE, CONTENT_TYPE, HeaderName, HeaderValue};
use actix_web::{HttpResponse, web};
use letip_domain::{
    Body, BusinessDetail, BusinessPage, BusinessPatch, CacheStatus, EnrichmentRun, Fetched,
    MessageStatusUpdate, Mutation, NewBusiness, NewContact, NewMessage, Once, Replay, Stats,
};
use serde::Serialize;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{IDEMPOTENT_REPLAYED, Id, Input, Key, ListParams};

/// The header that tells where a cacheable read was answered from.
pub const X_CACHE: &str = "x-cache";

/// [`X_CACHE`] as a header name, made once rather than checked on every answer.
pub(crate) static X_CACHE_NAME: HeaderName = HeaderName::from_static(X_CACHE);

/// Answers a read with its cache status, passing cached JSON through untouched.
fn cached<T: Serialize>(fetched: Fetched<T>) -> HttpResponse {
    let mut res = HttpResponse::Ok();
    res.insert_header((
        X_CACHE_NAME.clone(),
        HeaderValue::from_static(fetched.cache.as_str()),
    ));
    if let CacheStatus::Stale { age } = fetched.cache {
        res.insert_header((AGE, age.as_secs()));
    }
    match fetched.body {
        Body::Typed(value) => res.json(value),
        Body::Json(bytes) => res
            .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
            .body(bytes),
    }
}

/// Makes a write, once per `key` when the request has one, and answers it with `status`:
/// its answer now, or the answer stored with the key, again, marked
/// `Idempotent-Replayed: true`. Both are the same bytes (the stored answer is the JSON
/// the first one sent).
async fn write(
    state: &AppState,
    mutation: Mutation,
    key: &Key,
    status: StatusCode,
) -> Result<HttpResponse, ApiError> {
    let key = key.for_answer(status);
    let (status, json, replayed) = match state.repo.write(mutation, key.as_ref()).await? {
        Once::Done(done) => (
            status,
            done.to_json()
                .map_err(|e| ApiError::internal().caused_by(&e))?,
            false,
        ),
        Once::Replayed(Replay { status, json }) => (
            StatusCode::from_u16(status).map_err(|e| ApiError::internal().caused_by(&e))?,
            json,
            true,
        ),
    };
    let mut res = HttpResponse::build(status);
    if replayed {
        res.insert_header((IDEMPOTENT_REPLAYED, "true"));
    }
    if status == StatusCode::NO_CONTENT {
        return Ok(res.finish());
    }
    Ok(res
        .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
        .body(json))
}

/// Lists businesses with their contacts, newest first.
#[utoipa::path(
    get, path = "/api/businesses", tag = "businesses",
    params(ListParams),
    responses(
        (status = 200, description = "One page, newest `created_at` first, ties by id descending.",
            body = BusinessPage, headers(("X-Cache" = CacheHeader, description = "HIT, MISS, BYPASS, or STALE (the database is unreachable: the last answer the cache held, with nothing written to it since)"), ("Age" = u64, description = "With `X-Cache: STALE` only: seconds since that answer was stored")),
            links(("BusinessDetail" = (operation_id = "business_detail",
                parameters(("id" = "$response.body#/data/0/id")))))),
        (status = 400, description = "A parameter out of range, not decimal digits, given twice, \
            an unknown status, or text with NUL or that does not decode to UTF-8; the message names it.",
            body = ErrorBody),
    )
)]
pub async fn list_businesses(
    state: web::Data<AppState>,
    q: ListParams,
) -> Result<HttpResponse, ApiError> {
    Ok(cached(state.repo.list_businesses(&q.0).await?))
}

/// The dashboard's counters.
#[utoipa::path(
    get, path = "/api/businesses/stats", tag = "businesses",
    responses((status = 200, body = Stats, headers(("X-Cache" = CacheHeader, description = "HIT, MISS, BYPASS, or STALE (the database is unreachable: the last answer the cache held, with nothing written to it since)"), ("Age" = u64, description = "With `X-Cache: STALE` only: seconds since that answer was stored"))))
)]
pub async fn stats(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(cached(state.repo.stats().await?))
}

/// One business with its contacts, 10 newest enrichment logs and 5 newest messages.
#[utoipa::path(
    get, path = "/api/businesses/{id}", tag = "businesses",
    params(Id),
    responses(
        (status = 200, body = BusinessDetail,
            headers(("X-Cache" = CacheHeader, description = "HIT, MISS, BYPASS, or STALE (the database is unreachable: the last answer the cache held, with nothing written to it since)"), ("Age" = u64, description = "With `X-Cache: STALE` only: seconds since that answer was stored")),
            links(
                ("DeleteContact" = (operation_id = "delete_contact",
                    parameters(("id" = "$response.body#/contacts/0/id")))),
                ("UpdateMessage" = (operation_id = "update_message",
                    parameters(("id" = "$response.body#/outreach_messages/0/id")))),
            )),
        (status = 400, description = BAD_ID, body = ErrorBody),
        (status = 404, description = "No business has this id.", body = ErrorBody),
    )
)]
pub async fn business_detail(state: web::Data<AppState>, id: Id) -> Result<HttpResponse, ApiError> {
    Ok(cached(state.repo.business_detail(id.0).await?))
}

/// Creates a business.
#[utoipa::path(
    post, path = "/api/businesses", tag = "businesses",
    request_body = NewBusiness,
    responses(
        (status = 201, body = letip_domain::Business, links(
            ("BusinessDetail" = (operation_id = "business_detail", parameters(("id" = "$response.body#/id")))),
            ("UpdateBusiness" = (operation_id = "update_business", parameters(("id" = "$response.body#/id")))),
            ("DeleteBusiness" = (operation_id = "delete_business", parameters(("id" = "$response.body#/id")))),
            ("Enrich" = (operation_id = "enrich", parameters(("id" = "$response.body#/id")))),
            ("CreateContact" = (operation_id = "create_contact", parameters(("id" = "$response.body#/id")))),
            ("CreateMessage" = (operation_id = "create_message", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 400, description = BAD_BODY, body = ErrorBody),
    )
)]
pub async fn create_business(
    state: web::Data<AppState>,
    Input(new, key): Input<NewBusiness>,
) -> Result<HttpResponse, ApiError> {
    let mutation = Mutation::CreateBusiness(new);
    write(&state, mutation, &key, StatusCode::CREATED).await
}

/// Changes some fields of a business; `null` clears a nullable field.
#[utoipa::path(
    patch, path = "/api/businesses/{id}", tag = "businesses",
    params(Id),
    request_body = BusinessPatch,
    responses(
        (status = 200, description = "The business; an empty patch answers it unchanged.",
            body = letip_domain::Business),
        (status = 400, description = BAD_ID_OR_BODY, body = ErrorBody),
        (status = 404, description = "No business has this id.", body = ErrorBody),
    )
)]
pub async fn update_business(
    state: web::Data<AppState>,
    id: Id,
    Input(patch, key): Input<BusinessPatch>,
) -> Result<HttpResponse, ApiError> {
    let mutation = Mutation::UpdateBusiness { id: id.0, patch };
    write(&state, mutation, &key, StatusCode::OK).await
}

/// Deletes a business with its contacts, logs and messages.
#[utoipa::path(
    delete, path = "/api/businesses/{id}", tag = "businesses",
    params(Id),
    responses(
        (status = 204, description = "Deleted, with its contacts, logs and messages."),
        (status = 400, description = BAD_ID, body = ErrorBody),
        (status = 404, description = "No business has this id.", body = ErrorBody),
    )
)]
pub async fn delete_business(
    state: web::Data<AppState>,
    id: Id,
    key: Key,
) -> Result<HttpResponse, ApiError> {
    let mutation = Mutation::DeleteBusiness { id: id.0 };
    write(&state, mutation, &key, StatusCode::NO_CONTENT).await
}

/// Records the outcome of one enrichment run in one transaction.
#[utoipa::path(
    post, path = "/api/enrich/{id}", tag = "enrichment",
    params(Id),
    request_body = EnrichmentRun,
    responses(
        (status = 200, description = "The business as its detail shows it.", body = BusinessDetail,
            links(
                ("DeleteContact" = (operation_id = "delete_contact",
                    parameters(("id" = "$response.body#/contacts/0/id")))),
            )),
        (status = 400, description = BAD_ID_OR_BODY, body = ErrorBody),
        (status = 404, description = "No business has this id.", body = ErrorBody),
    )
)]
pub async fn enrich(
    state: web::Data<AppState>,
    id: Id,
    Input(run, key): Input<EnrichmentRun>,
) -> Result<HttpResponse, ApiError> {
    let mutation = Mutation::Enrich { id: id.0, run };
    write(&state, mutation, &key, StatusCode::OK).await
}

/// Adds a contact to a business.
#[utoipa::path(
    post, path = "/api/businesses/{id}/contacts", tag = "contacts",
    params(Id),
    request_body = NewContact,
    responses(
        (status = 201, body = letip_domain::Contact, links(
            ("DeleteContact" = (operation_id = "delete_contact", parameters(("id" = "$response.body#/id")))),
            ("BusinessDetail" = (operation_id = "business_detail", parameters(("id" = "$response.body#/business_id")))),
        )),
        (status = 400, description = BAD_ID_OR_BODY, body = ErrorBody),
        (status = 404, description = "No business has this id.", body = ErrorBody),
    )
)]
pub async fn create_contact(
    state: web::Data<AppState>,
    id: Id,
    Input(new, key): Input<NewContact>,
) -> Result<HttpResponse, ApiError> {
    let mutation = Mutation::CreateContact {
        business_id: id.0,
        new,
    };
    write(&state, mutation, &key, StatusCode::CREATED).await
}

/// Deletes a contact; messages addressed to it keep their text with no contact.
#[utoipa::path(
    delete, path = "/api/contacts/{id}", tag = "contacts",
    params(Id),
    responses(
        (status = 204, description = "Deleted; its messages keep their text with `contact_id: null`."),
        (status = 400, description = BAD_ID, body = ErrorBody),
        (status = 404, description = "No contact has this id.", body = ErrorBody),
    )
)]
pub async fn delete_contact(
    state: web::Data<AppState>,
    id: Id,
    key: Key,
) -> Result<HttpResponse, ApiError> {
    let mutation = Mutation::DeleteContact { id: id.0 };
    write(&state, mutation, &key, StatusCode::NO_CONTENT).await
}

/// Adds a generated outreach message to a business.
#[utoipa::path(
    post, path = "/api/businesses/{id}/messages", tag = "messages",
    params(Id),
    request_body = NewMessage,
    responses(
        (status = 201, description = "The message, with status `generated`.",
            body = letip_domain::OutreachMessage, links(
            ("UpdateMessage" = (operation_id = "update_message", parameters(("id" = "$response.body#/id")))),
            ("BusinessDetail" = (operation_id = "business_detail", parameters(("id" = "$response.body#/business_id")))),
        )),
        (status = 400, description = "As for any body, and also when `contact_id` names no \
            contact of this business (which the schema cannot express).", body = ErrorBody),
        (status = 404, description = "No business has this id.", body = ErrorBody),
    )
)]
pub async fn create_message(
    state: web::Data<AppState>,
    id: Id,
    Input(new, key): Input<NewMessage>,
) -> Result<HttpResponse, ApiError> {
    let mutation = Mutation::CreateMessage {
        business_id: id.0,
        new,
    };
    write(&state, mutation, &key, StatusCode::CREATED).await
}

/// Moves a message to `sent` (setting `sent_at`) or `failed`.
#[utoipa::path(
    patch, path = "/api/messages/{id}", tag = "messages",
    params(Id),
    request_body = MessageStatusUpdate,
    responses(
        (status = 200, body = letip_domain::OutreachMessage),
        (status = 400, description = BAD_ID_OR_BODY, body = ErrorBody),
        (status = 404, description = "No message has this id.", body = ErrorBody),
    )
)]
pub async fn update_message(
    state: web::Data<AppState>,
    id: Id,
    Input(update, key): Input<MessageStatusUpdate>,
) -> Result<HttpResponse, ApiError> {
    let mutation = Mutation::UpdateMessage { id: id.0, update };
    write(&state, mutation, &key, StatusCode::OK).await
}

const BAD_ID: &str = "The id is not decimal digits within 1 to 2147483647 (0 names nothing: 404).";
const BAD_BODY: &str = "The body is not a JSON object of this schema: malformed JSON, a wrong type, \
    an unknown or read-only field, a value out of range, text with NUL or an unpaired surrogate, \
    or a Content-Type other than JSON (a missing one is read as JSON). The message names the \
    field.";
const BAD_ID_OR_BODY: &str = "A bad id, or a body that is not a JSON object of this schema \
    (see `POST /api/businesses`); the message names the parameter or field.";

/// The `X-Cache` header of a cacheable read (documentation only: the values are written
/// from `CacheStatus::as_str`).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
#[allow(dead_code)] // never built: it only describes the header
pub(crate) enum CacheHeader {
    Hit,
    Miss,
    Bypass,
    Stale,
}
