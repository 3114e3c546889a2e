//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]`
//! annotations and the view types' `ToSchema` derives.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{api, appliance, auth, auth_api, error, metrics, sim_api, stream};

/// Adds the two security schemes: bearer token and session cookie.
#[derive(Debug)]
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        c.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                auth_api::SESSION_COOKIE,
                "Session cookie from /api/v1/auth/login; state-changing requests also need X-CSRF-Token",
            ))),
        );
    }
}

/// The console API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Ingot console API", description = "Management API of the Ingot NAS appliance. \
        Every route except health, auth/status, auth/setup and auth/login needs a session cookie \
        (plus X-CSRF-Token on state-changing requests) or a bearer API token."),
    modifiers(&Security),
    security(("bearer" = []), ("session" = [])),
    paths(
        api::health, api::system, api::devices, api::device, api::pool, api::replace, api::clear,
        api::jobs, api::start_scrub, api::pause_job, api::resume_job, api::cancel_job,
        api::encryption, api::unlock, api::lock, api::change_passphrase,
        api::export, api::mount, api::unmount, api::events, api::settings, api::put_settings,
        api::stats, stream::stream, metrics::metrics, openapi_json,
        auth_api::status, auth_api::setup, auth_api::login, auth_api::logout,
        auth_api::change_password, auth_api::tokens, auth_api::create_token, auth_api::delete_token,
        sim_api::drives, sim_api::fault, sim_api::add,
    ),
    components(schemas(
        error::ErrorBody, error::ErrorDetail, appliance::ErrorCode,
        appliance::SystemInfo, appliance::Device, appliance::DeviceState, appliance::Smart,
        appliance::ErrorCounters, appliance::PoolStatus, appliance::PoolState, appliance::PoolMember,
        appliance::Job, appliance::JobKind, appliance::JobState, appliance::ReplaceRequest,
        appliance::EncryptionStatus, appliance::ExportStatus, appliance::ExportState,
        appliance::Settings, appliance::ScrubSchedule, appliance::IoStats, appliance::IoCounters,
        appliance::DeviceIo, appliance::LatencyHistogram, appliance::Event, appliance::EventData,
        appliance::Severity, appliance::EventPage, api::Health, api::UnlockRequest,
        api::PassphraseChange, auth_api::PasswordRequest, auth_api::PasswordChange,
        auth_api::LoginResponse, auth_api::AuthStatus, auth_api::TokenRequest,
        auth_api::CreatedToken, auth::TokenInfo, appliance::DamagedBlock, appliance::SimDrive,
        appliance::SimFaultCounters, appliance::SimFault, appliance::SimAddRequest,
    ))
)]
pub struct ApiDoc;

/// The OpenAPI 3 document of this API.
#[utoipa::path(get, path = "/api/openapi.json", tag = "system",
    responses((status = 200, body = Object, description = "OpenAPI 3 document", content_type = "application/json")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
