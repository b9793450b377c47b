//! An axum hello-world on the same setup as the API: the ceiling the HTTP
//! benchmark compares eventsift with. `cargo run --release --example hello -- 127.0.0.1:5099`

use axum::Router;
use axum::routing::any;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5099".into());
    let app = Router::new().fallback(any(|| async { "Hello, world!\n" }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await
}
