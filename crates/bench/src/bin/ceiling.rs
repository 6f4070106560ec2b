//! The ceiling of any HTTP cache hit on this machine: an actix-web handler that answers
//! fixed bytes from memory, as fast as the framework allows.
//!
//! `bench-ceiling PORT FILE` serves FILE's bytes as JSON at every path.

use actix_web::{App, HttpResponse, HttpServer, web};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(3900);
    let file = args.next().unwrap_or_else(|| "/dev/null".into());
    let body = web::Bytes::from(std::fs::read(file)?);
    HttpServer::new(move || {
        let body = body.clone();
        App::new().default_service(web::to(move || {
            let body = body.clone();
            async move {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .insert_header(("x-cache", "HIT"))
                    .body(body)
            }
        }))
    })
    .workers(2)
    .bind(("127.0.0.1", port))?
    .run()
    .await
}
