//! Ingot management console: a REST/JSON API under `/api/v1` with an OpenAPI
//! document, live updates over SSE, Prometheus metrics, admin authentication
//! (Argon2id password, session cookie + CSRF token, bearer API tokens,
//! rate-limited login) and the embedded web UI.
//!
//! The console reaches the appliance only through the [`Appliance`] trait.
//! Build the HTTP service with [`router`] and run it with [`serve`].

#![forbid(unsafe_code)]

pub mod api;
pub mod appliance;
pub mod assets;
pub mod auth;
pub mod auth_api;
pub mod config;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod sim_api;
pub mod stream;
pub mod testing;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

pub use appliance::{Appliance, ApplianceError, ApplianceResult, ErrorCode};
pub use auth::{AuthError, hash_password};
pub use config::ConsoleConfig;

/// Shared state of every handler.
#[derive(Clone)]
pub struct Ctx {
    /// The appliance.
    pub app: Arc<dyn Appliance>,
    /// Auth state.
    pub auth: Arc<auth::AuthStore>,
    /// Configuration.
    pub cfg: Arc<ConsoleConfig>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Every route of the API as (method, path), as routed and documented.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/health"),
    ("get", "/api/v1/auth/status"),
    ("post", "/api/v1/auth/setup"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/logout"),
    ("post", "/api/v1/auth/password"),
    ("get", "/api/v1/tokens"),
    ("post", "/api/v1/tokens"),
    ("delete", "/api/v1/tokens/{id}"),
    ("get", "/api/v1/system"),
    ("get", "/api/v1/devices"),
    ("get", "/api/v1/devices/{id}"),
    ("get", "/api/v1/pool"),
    ("post", "/api/v1/pool/replace"),
    ("post", "/api/v1/pool/clear"),
    ("get", "/api/v1/jobs"),
    ("post", "/api/v1/jobs/scrub"),
    ("post", "/api/v1/jobs/{id}/pause"),
    ("post", "/api/v1/jobs/{id}/resume"),
    ("post", "/api/v1/jobs/{id}/cancel"),
    ("get", "/api/v1/encryption"),
    ("post", "/api/v1/encryption/unlock"),
    ("post", "/api/v1/encryption/lock"),
    ("post", "/api/v1/encryption/passphrase"),
    ("get", "/api/v1/export"),
    ("post", "/api/v1/export/mount"),
    ("post", "/api/v1/export/unmount"),
    ("get", "/api/v1/events"),
    ("get", "/api/v1/events/stream"),
    ("get", "/api/v1/settings"),
    ("put", "/api/v1/settings"),
    ("get", "/api/v1/stats"),
    ("get", "/api/v1/sim/drives"),
    ("post", "/api/v1/sim/drives"),
    ("post", "/api/v1/sim/drives/{id}/fault"),
    ("get", "/api/openapi.json"),
    ("get", "/metrics"),
];

/// Adds headers every response carries.
async fn common_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}

/// Builds the console's HTTP service; fails if the state file is unreadable
/// or the pre-set admin hash is not a PHC string.
pub fn try_router(app: Arc<dyn Appliance>, cfg: ConsoleConfig) -> Result<Router, AuthError> {
    try_router_with_auth(app, cfg).map(|(r, _)| r)
}

/// Like [`try_router`], also returning the auth store the service uses, so the
/// appliance can mint and revoke its own API tokens (the local CLI's).
pub fn try_router_with_auth(
    app: Arc<dyn Appliance>,
    cfg: ConsoleConfig,
) -> Result<(Router, Arc<auth::AuthStore>), AuthError> {
    let auth = Arc::new(auth::AuthStore::open(cfg.clone())?);
    let ctx = Ctx {
        app,
        auth,
        cfg: Arc::new(cfg.clone()),
    };
    let public = Router::new()
        .route("/api/v1/health", get(api::health))
        .route("/api/v1/auth/status", get(auth_api::status))
        .route("/api/v1/auth/setup", post(auth_api::setup))
        .route("/api/v1/auth/login", post(auth_api::login))
        .route("/", get(assets::index));
    let protected = Router::new()
        .route("/api/v1/auth/logout", post(auth_api::logout))
        .route("/api/v1/auth/password", post(auth_api::change_password))
        .route(
            "/api/v1/tokens",
            get(auth_api::tokens).post(auth_api::create_token),
        )
        .route("/api/v1/tokens/{id}", delete(auth_api::delete_token))
        .route("/api/v1/system", get(api::system))
        .route("/api/v1/devices", get(api::devices))
        .route("/api/v1/devices/{id}", get(api::device))
        .route("/api/v1/pool", get(api::pool))
        .route("/api/v1/pool/replace", post(api::replace))
        .route("/api/v1/pool/clear", post(api::clear))
        .route("/api/v1/jobs", get(api::jobs))
        .route("/api/v1/jobs/scrub", post(api::start_scrub))
        .route("/api/v1/jobs/{id}/pause", post(api::pause_job))
        .route("/api/v1/jobs/{id}/resume", post(api::resume_job))
        .route("/api/v1/jobs/{id}/cancel", post(api::cancel_job))
        .route("/api/v1/encryption", get(api::encryption))
        .route("/api/v1/encryption/unlock", post(api::unlock))
        .route("/api/v1/encryption/lock", post(api::lock))
        .route(
            "/api/v1/encryption/passphrase",
            post(api::change_passphrase),
        )
        .route("/api/v1/export", get(api::export))
        .route("/api/v1/export/mount", post(api::mount))
        .route("/api/v1/export/unmount", post(api::unmount))
        .route("/api/v1/events", get(api::events))
        .route("/api/v1/events/stream", get(stream::stream))
        .route(
            "/api/v1/settings",
            get(api::settings).put(api::put_settings),
        )
        .route("/api/v1/stats", get(api::stats))
        .route(
            "/api/v1/sim/drives",
            get(sim_api::drives).post(sim_api::add),
        )
        .route("/api/v1/sim/drives/{id}/fault", post(sim_api::fault))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .route("/metrics", get(metrics::metrics))
        .route_layer(middleware::from_fn_with_state(
            ctx.clone(),
            auth_api::require_auth,
        ));
    let auth = ctx.auth.clone();
    let router = Router::new()
        .merge(public)
        .merge(protected)
        .fallback(assets::fallback)
        .method_not_allowed_fallback(assets::method_not_allowed)
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .layer(middleware::from_fn(common_headers))
        .with_state(ctx);
    Ok((router, auth))
}

/// Builds the console's HTTP service. If the state file cannot be loaded, the
/// error is logged and every request is answered 503 with its message, so
/// the appliance keeps running and the cause is visible.
pub fn router(app: Arc<dyn Appliance>, cfg: ConsoleConfig) -> Router {
    match try_router(app, cfg) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "console unavailable");
            let msg = e.to_string();
            Router::new().fallback(move || {
                let msg = msg.clone();
                async move {
                    error::ApiError::new(
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        format!("console unavailable: {msg}"),
                    )
                    .into_response()
                }
            })
        }
    }
}

/// Signal given to long-lived streams when the server shuts down.
#[derive(Debug, Clone)]
pub struct Shutdown(pub tokio::sync::watch::Receiver<bool>);

/// Serves `router` on `listener` until `shutdown` completes; live event
/// streams are closed at shutdown so the graceful stop does not hang.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let router = router.layer(axum::Extension(Shutdown(rx)));
    let signal = async move {
        shutdown.await;
        let _ = tx.send(true);
    };
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(signal)
    .await
}
