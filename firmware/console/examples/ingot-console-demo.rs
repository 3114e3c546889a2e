//! `ingot-console-demo`: serves the console router on a
//! [`FakeAppliance`] test double, FOR THE BROWSER TESTS ONLY
//! (`tests/browser/run`). It manages no storage.
//!
//! Usage: `cargo run -p ingot-console --example ingot-console-demo -- PORT [STATE_FILE]`
//!
//! Besides the console it serves unauthenticated test-control endpoints that
//! exist only in this demo:
//! - `POST /demo/fault/{device}`: mark a device FAULTED;
//! - `POST /demo/checksum/{n}`: the next scrub repairs `n` checksum errors.
//!
//! A background task drives the fake: I/O every 500 ms, jobs advance 1 GiB
//! every 250 ms.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use ingot_console::testing::FakeAppliance;
use ingot_console::{ConsoleConfig, router, serve};

async fn fault(State(fake): State<Arc<FakeAppliance>>, Path(dev): Path<String>) -> StatusCode {
    match fake.fault_device(&dev) {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::NOT_FOUND,
    }
}

async fn checksum(State(fake): State<Arc<FakeAppliance>>, Path(n): Path<u64>) -> StatusCode {
    fake.inject_checksum_errors(n);
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().as_deref().unwrap_or("8080").parse()?;
    let state_file = match args.next() {
        Some(p) => std::path::PathBuf::from(p),
        None => std::env::temp_dir().join(format!("ingot-console-demo-{port}.json")),
    };
    let fake = Arc::new(FakeAppliance::new());
    let driver = fake.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut n = 0u64;
        loop {
            tick.tick().await;
            driver.advance_jobs(1 << 30, Duration::from_millis(250));
            if n.is_multiple_of(2) {
                driver.simulate_io();
            }
            n += 1;
        }
    });
    let control = Router::new()
        .route("/demo/fault/{device}", post(fault))
        .route("/demo/checksum/{n}", post(checksum))
        .with_state(fake.clone());
    let app = control.merge(router(fake, ConsoleConfig::new(&state_file)));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, state_file = %state_file.display(), "ingot-console-demo (FakeAppliance test double) listening");
    serve(listener, app, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
