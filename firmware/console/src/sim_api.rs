//! Fault drills on the appliance's simulated NVMe drives (`/api/v1/sim/...`): pull a
//! drive, put it back, fail or delay its commands, corrupt its sectors, hot-add a blank
//! one. `ingot sim fault` and `ingot sim add` drive these routes; an appliance without
//! simulated drives answers 404 with a clear message.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::Ctx;
use crate::appliance::{Device, SimAddRequest, SimDrive, SimFault};
use crate::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorBody};

/// Largest delay accepted (one hour).
const MAX_DELAY_MS: u64 = 3_600_000;
/// Most blocks one corrupt request may touch.
const MAX_CORRUPT_BLOCKS: u64 = 65_536;

fn check(f: &SimFault) -> ApiResult<()> {
    match f {
        SimFault::Delay { ms, .. } if *ms == 0 || *ms > MAX_DELAY_MS => Err(ApiError::bad_request(
            format!("ms must be in 1..={MAX_DELAY_MS}, not {ms}"),
        )),
        SimFault::Corrupt { blocks, .. } if *blocks == 0 || *blocks > MAX_CORRUPT_BLOCKS => {
            Err(ApiError::bad_request(format!(
                "blocks must be in 1..={MAX_CORRUPT_BLOCKS}, not {blocks}"
            )))
        }
        SimFault::Fail { sct, .. } if *sct > 7 => Err(ApiError::bad_request(format!(
            "sct must be in 0..=7, not {sct}"
        ))),
        SimFault::Fail { sct: 0, sc: 0, .. } => {
            Err(ApiError::bad_request("status 0:0 is success, not a fault"))
        }
        SimFault::Fail { count: Some(0), .. } | SimFault::Delay { count: Some(0), .. } => {
            Err(ApiError::bad_request("count must be at least 1"))
        }
        _ => Ok(()),
    }
}

/// The simulated drives and the faults injected into them.
#[utoipa::path(get, path = "/api/v1/sim/drives", tag = "sim",
    responses((status = 200, body = Vec<SimDrive>), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "the appliance has no simulated drives")))]
pub async fn drives(State(ctx): State<Ctx>) -> ApiResult<Json<Vec<SimDrive>>> {
    Ok(Json(ctx.app.sim_drives().await?))
}

/// Injects a fault into a simulated drive (or removes, reinserts, clears).
#[utoipa::path(post, path = "/api/v1/sim/drives/{id}/fault", tag = "sim",
    params(("id" = String, Path, description = "Device id (`nvme1`) or drive name (`sim1`)")),
    request_body = SimFault,
    responses((status = 200, body = SimDrive), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn fault(
    State(ctx): State<Ctx>,
    ApiPath(id): ApiPath<String>,
    ApiJson(f): ApiJson<SimFault>,
) -> ApiResult<Json<SimDrive>> {
    crate::api::check_id(&id)?;
    check(&f)?;
    Ok(Json(ctx.app.sim_fault(&id, f).await?))
}

/// Creates a blank simulated drive and hot-adds it (a replacement target, not in the pool).
#[utoipa::path(post, path = "/api/v1/sim/drives", tag = "sim",
    request_body = SimAddRequest,
    responses((status = 201, body = Device), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn add(
    State(ctx): State<Ctx>,
    ApiJson(req): ApiJson<SimAddRequest>,
) -> ApiResult<(StatusCode, Json<Device>)> {
    Ok((StatusCode::CREATED, Json(ctx.app.sim_add(req).await?)))
}
