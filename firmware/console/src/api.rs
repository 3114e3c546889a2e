//! REST handlers for everything the appliance shows and does (`/api/v1/...`).
//! Each handler is a thin translation between HTTP and [`Appliance`].
//!
//! [`Appliance`]: crate::appliance::Appliance

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Ctx;
use crate::appliance::{
    Device, EncryptionStatus, EventPage, EventQuery, ExportStatus, IoStats, Job, PoolStatus,
    ReplaceRequest, Settings, SystemInfo,
};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};

/// Health check answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the console answers.
    pub status: String,
}

/// Passphrase to unlock the pool.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlockRequest {
    /// The passphrase.
    pub passphrase: String,
}

/// Change of the encryption passphrase.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PassphraseChange {
    /// Current passphrase.
    pub old: String,
    /// New passphrase (at least 8 characters).
    pub new: String,
}

/// Longest passphrase accepted (bounds key-derivation work).
const MAX_PASSPHRASE_LEN: usize = 1024;

fn check_passphrase(p: &str, what: &str) -> ApiResult<()> {
    if p.is_empty() || p.len() > MAX_PASSPHRASE_LEN {
        return Err(ApiError::bad_request(format!(
            "{what} must have 1..={MAX_PASSPHRASE_LEN} bytes"
        )));
    }
    Ok(())
}

/// Rejects ids that are not 1..=128 of `[A-Za-z0-9-_.:]`.
pub fn check_id(id: &str) -> ApiResult<()> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        return Err(ApiError::bad_request(format!(
            "invalid id {:?}: expected 1..=128 of [A-Za-z0-9-_.:]",
            id.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

/// Liveness check (no auth).
#[utoipa::path(get, path = "/api/v1/health", tag = "system",
    responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Firmware version, build and uptime.
#[utoipa::path(get, path = "/api/v1/system", tag = "system",
    responses((status = 200, body = SystemInfo), (status = 401, body = ErrorBody)))]
pub async fn system(State(ctx): State<Ctx>) -> ApiResult<Json<SystemInfo>> {
    Ok(Json(ctx.app.system().await?))
}

/// All devices with identify data, SMART and error counters.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices",
    responses((status = 200, body = Vec<Device>), (status = 401, body = ErrorBody)))]
pub async fn devices(State(ctx): State<Ctx>) -> ApiResult<Json<Vec<Device>>> {
    Ok(Json(ctx.app.devices().await?))
}

/// One device.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = Device), (status = 404, body = ErrorBody)))]
pub async fn device(
    State(ctx): State<Ctx>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Device>> {
    check_id(&id)?;
    Ok(Json(ctx.app.device(&id).await?))
}

/// Pool status and topology.
#[utoipa::path(get, path = "/api/v1/pool", tag = "pool",
    responses((status = 200, body = PoolStatus), (status = 401, body = ErrorBody)))]
pub async fn pool(State(ctx): State<Ctx>) -> ApiResult<Json<PoolStatus>> {
    Ok(Json(ctx.app.pool().await?))
}

/// Replaces a pool member; starts a resilver.
#[utoipa::path(post, path = "/api/v1/pool/replace", tag = "pool",
    request_body = ReplaceRequest,
    responses((status = 202, body = Job), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn replace(
    State(ctx): State<Ctx>,
    ApiJson(req): ApiJson<ReplaceRequest>,
) -> ApiResult<(axum::http::StatusCode, Json<Job>)> {
    check_id(&req.old)?;
    check_id(&req.new)?;
    if req.old == req.new {
        return Err(ApiError::bad_request(
            "old and new must be different devices",
        ));
    }
    let job = ctx.app.replace_device(req).await?;
    Ok((axum::http::StatusCode::ACCEPTED, Json(job)))
}

/// Resets the pool's error counters and damaged-block list (like `zpool clear`).
#[utoipa::path(post, path = "/api/v1/pool/clear", tag = "pool",
    responses((status = 200, body = PoolStatus), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn clear(State(ctx): State<Ctx>) -> ApiResult<Json<PoolStatus>> {
    Ok(Json(ctx.app.clear_errors().await?))
}

/// Current and recent scrub/resilver jobs.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs",
    responses((status = 200, body = Vec<Job>), (status = 401, body = ErrorBody)))]
pub async fn jobs(State(ctx): State<Ctx>) -> ApiResult<Json<Vec<Job>>> {
    Ok(Json(ctx.app.jobs().await?))
}

/// Starts a scrub.
#[utoipa::path(post, path = "/api/v1/jobs/scrub", tag = "jobs",
    responses((status = 202, body = Job), (status = 409, body = ErrorBody), (status = 423, body = ErrorBody)))]
pub async fn start_scrub(State(ctx): State<Ctx>) -> ApiResult<(axum::http::StatusCode, Json<Job>)> {
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(ctx.app.start_scrub().await?),
    ))
}

/// Pauses a job.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/pause", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn pause_job(
    State(ctx): State<Ctx>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Job>> {
    check_id(&id)?;
    Ok(Json(ctx.app.pause_job(&id).await?))
}

/// Resumes a paused job.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/resume", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn resume_job(
    State(ctx): State<Ctx>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Job>> {
    check_id(&id)?;
    Ok(Json(ctx.app.resume_job(&id).await?))
}

/// Cancels a job.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel_job(
    State(ctx): State<Ctx>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Job>> {
    check_id(&id)?;
    Ok(Json(ctx.app.cancel_job(&id).await?))
}

/// Encryption state.
#[utoipa::path(get, path = "/api/v1/encryption", tag = "encryption",
    responses((status = 200, body = EncryptionStatus), (status = 401, body = ErrorBody)))]
pub async fn encryption(State(ctx): State<Ctx>) -> ApiResult<Json<EncryptionStatus>> {
    Ok(Json(ctx.app.encryption().await?))
}

/// Unlocks the pool with the passphrase.
#[utoipa::path(post, path = "/api/v1/encryption/unlock", tag = "encryption",
    request_body = UnlockRequest,
    responses((status = 200, body = EncryptionStatus), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn unlock(
    State(ctx): State<Ctx>,
    ApiJson(req): ApiJson<UnlockRequest>,
) -> ApiResult<Json<EncryptionStatus>> {
    check_passphrase(&req.passphrase, "passphrase")?;
    Ok(Json(ctx.app.unlock(&req.passphrase).await?))
}

/// Locks the pool (unloads the key).
#[utoipa::path(post, path = "/api/v1/encryption/lock", tag = "encryption",
    responses((status = 200, body = EncryptionStatus), (status = 409, body = ErrorBody)))]
pub async fn lock(State(ctx): State<Ctx>) -> ApiResult<Json<EncryptionStatus>> {
    Ok(Json(ctx.app.lock().await?))
}

/// Changes the encryption passphrase.
#[utoipa::path(post, path = "/api/v1/encryption/passphrase", tag = "encryption",
    request_body = PassphraseChange,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 423, body = ErrorBody)))]
pub async fn change_passphrase(
    State(ctx): State<Ctx>,
    ApiJson(req): ApiJson<PassphraseChange>,
) -> ApiResult<axum::http::StatusCode> {
    check_passphrase(&req.old, "old passphrase")?;
    check_passphrase(&req.new, "new passphrase")?;
    if req.new.chars().count() < 8 {
        return Err(ApiError::bad_request(
            "new passphrase must have at least 8 characters",
        ));
    }
    ctx.app.change_passphrase(&req.old, &req.new).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Export state.
#[utoipa::path(get, path = "/api/v1/export", tag = "export",
    responses((status = 200, body = ExportStatus), (status = 401, body = ErrorBody)))]
pub async fn export(State(ctx): State<Ctx>) -> ApiResult<Json<ExportStatus>> {
    Ok(Json(ctx.app.export().await?))
}

/// Mounts the export.
#[utoipa::path(post, path = "/api/v1/export/mount", tag = "export",
    responses((status = 200, body = ExportStatus), (status = 409, body = ErrorBody), (status = 423, body = ErrorBody)))]
pub async fn mount(State(ctx): State<Ctx>) -> ApiResult<Json<ExportStatus>> {
    Ok(Json(ctx.app.mount().await?))
}

/// Unmounts the export.
#[utoipa::path(post, path = "/api/v1/export/unmount", tag = "export",
    responses((status = 200, body = ExportStatus), (status = 409, body = ErrorBody)))]
pub async fn unmount(State(ctx): State<Ctx>) -> ApiResult<Json<ExportStatus>> {
    Ok(Json(ctx.app.unmount().await?))
}

/// A page of the event history, newest first.
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    params(EventQuery),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody)))]
pub async fn events(
    State(ctx): State<Ctx>,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Json<EventPage>> {
    q.effective_limit()?;
    Ok(Json(ctx.app.events(q).await?))
}

/// Current settings.
#[utoipa::path(get, path = "/api/v1/settings", tag = "settings",
    responses((status = 200, body = Settings), (status = 401, body = ErrorBody)))]
pub async fn settings(State(ctx): State<Ctx>) -> ApiResult<Json<Settings>> {
    Ok(Json(ctx.app.settings().await?))
}

/// Replaces the settings.
#[utoipa::path(put, path = "/api/v1/settings", tag = "settings",
    request_body = Settings,
    responses((status = 200, body = Settings), (status = 400, body = ErrorBody)))]
pub async fn put_settings(
    State(ctx): State<Ctx>,
    ApiJson(s): ApiJson<Settings>,
) -> ApiResult<Json<Settings>> {
    s.validate()?;
    Ok(Json(ctx.app.update_settings(s).await?))
}

/// A snapshot of the I/O statistics.
#[utoipa::path(get, path = "/api/v1/stats", tag = "stats",
    responses((status = 200, body = IoStats), (status = 401, body = ErrorBody)))]
pub async fn stats(State(ctx): State<Ctx>) -> ApiResult<Json<IoStats>> {
    Ok(Json(ctx.app.stats().await?))
}
