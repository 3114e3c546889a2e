//! HTTP side of authentication: the auth middleware (session cookie + CSRF
//! header, or bearer token), login/logout, first-time password setup,
//! password change and API token management.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Ctx;
use crate::auth::{LoginOutcome, NewSession, Principal, TokenInfo, check_new_password};
use crate::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorBody};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "ingot_session";
/// Header carrying the CSRF token on state-changing cookie requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Password for login or first-time setup.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    /// The admin password.
    pub password: String,
}

/// Change of the admin password.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// Current password.
    pub old: String,
    /// New password (at least 8 characters).
    pub new: String,
}

/// Answer of a successful login: the CSRF token to send in `X-CSRF-Token`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// Double-submit CSRF token for state-changing requests.
    pub csrf_token: String,
    /// Session lifetime in seconds.
    pub expires_in_secs: u64,
}

/// Whether a password is set and whether the caller is logged in.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuthStatus {
    /// An admin password exists (false: the set-password page is shown).
    pub password_set: bool,
    /// The caller has a valid session cookie.
    pub authenticated: bool,
    /// The session's CSRF token when authenticated.
    pub csrf_token: Option<String>,
}

/// Request to create an API token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// A name to recognise the token by (1..=64 characters).
    pub name: String,
}

/// A newly created token: the secret is shown only in this answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// Token metadata.
    pub info: TokenInfo,
    /// The bearer secret; only its hash is stored.
    pub token: String,
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

fn client_ip(req_ext: &axum::http::Extensions) -> IpAddr {
    req_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

fn session_cookie(ctx: &Ctx, value: &str, max_age: u64) -> HeaderValue {
    let secure = if ctx.auth.config().secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let s = format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    );
    HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static("ingot_session=; Max-Age=0"))
}

fn login_response(ctx: &Ctx, s: NewSession) -> Response {
    let ttl = ctx.auth.session_ttl().as_secs();
    let mut resp = Json(LoginResponse {
        csrf_token: s.csrf,
        expires_in_secs: ttl,
    })
    .into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(ctx, &s.id, ttl));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Middleware: requires a bearer token, or a session cookie plus (for
/// state-changing methods) a matching `X-CSRF-Token` header.
pub async fn require_auth(State(ctx): State<Ctx>, mut req: Request, next: Next) -> Response {
    let headers = req.headers();
    let principal = if let Some(tok) = bearer(headers) {
        match ctx.auth.check_token(tok) {
            Some(id) => Principal::Token(id),
            None => return ApiError::unauthorized().into_response(),
        }
    } else if let Some(sid) = cookie_value(headers, SESSION_COOKIE) {
        let Some(csrf) = ctx.auth.session_csrf(sid) else {
            return ApiError::unauthorized().into_response();
        };
        let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if !sent.is_some_and(|s| crate::auth::ct_eq(s, &csrf)) {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf",
                    "missing or wrong X-CSRF-Token header",
                )
                .into_response();
            }
        }
        Principal::Session(sid.to_string())
    } else {
        return ApiError::unauthorized().into_response();
    };
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// Whether a password is set and whether the caller is logged in (no auth).
#[utoipa::path(get, path = "/api/v1/auth/status", tag = "auth",
    responses((status = 200, body = AuthStatus)))]
pub async fn status(State(ctx): State<Ctx>, headers: HeaderMap) -> Json<AuthStatus> {
    let csrf = cookie_value(&headers, SESSION_COOKIE).and_then(|s| ctx.auth.session_csrf(s));
    Json(AuthStatus {
        password_set: ctx.auth.password_set(),
        authenticated: csrf.is_some(),
        csrf_token: csrf,
    })
}

async fn hash_blocking(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || crate::auth::hash_password(&password))
        .await
        .map_err(|e| ApiError::internal(format!("hashing task failed: {e}")))?
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Sets the first admin password; only while none is set (no auth). Logs in.
#[utoipa::path(post, path = "/api/v1/auth/setup", tag = "auth",
    request_body = PasswordRequest,
    responses((status = 200, body = LoginResponse), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "A password is already set")))]
pub async fn setup(
    State(ctx): State<Ctx>,
    ApiJson(req): ApiJson<PasswordRequest>,
) -> ApiResult<Response> {
    if ctx.auth.password_set() {
        return Err(ApiError::conflict("an admin password is already set"));
    }
    check_new_password(&req.password).map_err(ApiError::bad_request)?;
    let phc = hash_blocking(req.password).await?;
    match ctx.auth.set_initial_password(phc) {
        Ok(Some(s)) => Ok(login_response(&ctx, s)),
        Ok(None) => Err(ApiError::conflict("an admin password is already set")),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// Logs in with the admin password (no auth; rate-limited per client IP).
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = PasswordRequest,
    responses((status = 200, body = LoginResponse,
        headers(("set-cookie" = String, description = "Session cookie"))),
        (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("retry-after" = u64)))))]
pub async fn login(State(ctx): State<Ctx>, req: Request) -> ApiResult<Response> {
    let ip = client_ip(req.extensions());
    if let Some(secs) = ctx.auth.rate_limited(ip) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many failed logins; retry in {secs} s"),
        );
        e.retry_after = Some(secs);
        return Err(e);
    }
    let ApiJson(body) =
        <ApiJson<PasswordRequest> as axum::extract::FromRequest<Ctx>>::from_request(req, &ctx)
            .await?;
    let Some(phc) = ctx.auth.admin_hash() else {
        return Err(ApiError::conflict(
            "no admin password is set yet; set one first",
        ));
    };
    if let Err(secs) = ctx.auth.begin_login(ip) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many failed logins; retry in {secs} s"),
        );
        e.retry_after = Some(secs);
        return Err(e);
    }
    let password = body.password;
    let ok = if password.len() > crate::auth::MAX_PASSWORD_LEN {
        false
    } else {
        tokio::task::spawn_blocking(move || crate::auth::verify_password(&password, &phc))
            .await
            .map_err(|e| ApiError::internal(format!("verify task failed: {e}")))?
    };
    match ctx
        .auth
        .finish_login(ip, ok)
        .map_err(|e| ApiError::internal(e.to_string()))?
    {
        LoginOutcome::Ok(s) => Ok(login_response(&ctx, s)),
        LoginOutcome::WrongPassword => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong password",
        )),
    }
}

/// Ends the session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204)))]
pub async fn logout(
    State(ctx): State<Ctx>,
    axum::Extension(who): axum::Extension<Principal>,
) -> Response {
    if let Principal::Session(id) = who {
        ctx.auth.logout(&id);
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&ctx, "", 0));
    resp
}

/// Changes the admin password; ends all other sessions.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth",
    request_body = PasswordChange,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn change_password(
    State(ctx): State<Ctx>,
    axum::Extension(who): axum::Extension<Principal>,
    ApiJson(req): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    check_new_password(&req.new).map_err(ApiError::bad_request)?;
    let phc = ctx
        .auth
        .admin_hash()
        .ok_or_else(|| ApiError::conflict("no admin password is set"))?;
    let old = req.old;
    let ok = old.len() <= crate::auth::MAX_PASSWORD_LEN
        && tokio::task::spawn_blocking(move || crate::auth::verify_password(&old, &phc))
            .await
            .map_err(|e| ApiError::internal(format!("verify task failed: {e}")))?;
    if !ok {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "current password is wrong",
        ));
    }
    let new_phc = hash_blocking(req.new).await?;
    let keep = match &who {
        Principal::Session(id) => Some(id.as_str()),
        Principal::Token(_) => None,
    };
    ctx.auth
        .change_password(new_phc, keep)
        .map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists API tokens (without secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "auth",
    responses((status = 200, body = Vec<TokenInfo>)))]
pub async fn tokens(State(ctx): State<Ctx>) -> Json<Vec<TokenInfo>> {
    Json(ctx.auth.tokens())
}

/// Creates an API token; the secret is returned once.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "auth",
    request_body = TokenRequest,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody)))]
pub async fn create_token(
    State(ctx): State<Ctx>,
    ApiJson(req): ApiJson<TokenRequest>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "token name must have 1..=64 printable characters",
        ));
    }
    let (info, token) = ctx.auth.create_token(name).map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(CreatedToken { info, token })))
}

/// Deletes an API token.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "auth",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_token(
    State(ctx): State<Ctx>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    if ctx.auth.delete_token(&id).map_err(ApiError::internal)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no API token {id:?}")))
    }
}
