//! A small client of the console API, used by the administration commands when an
//! appliance holds the pool: bearer-token auth with the appliance's local token, JSON in
//! and out, errors carrying the API's stable code and message.

use crate::runtime::RunInfo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Why a request to the appliance failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The appliance did not answer.
    #[error("cannot reach the appliance of pool {pool} at {url}: {source}")]
    Unreachable {
        /// Pool.
        pool: String,
        /// Console URL.
        url: String,
        /// Transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The appliance refused the request.
    #[error("{method} {path}: {message} ({code}, HTTP {status})")]
    Api {
        /// Method.
        method: &'static str,
        /// Route.
        path: String,
        /// HTTP status.
        status: u16,
        /// The API's stable error code.
        code: String,
        /// Its human message.
        message: String,
    },
    /// The answer was not what the route documents.
    #[error("{method} {path}: unexpected answer: {detail}")]
    Decode {
        /// Method.
        method: &'static str,
        /// Route.
        path: String,
        /// What went wrong.
        detail: String,
    },
}

/// A client of one appliance's console.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    info: RunInfo,
}

impl Client {
    /// A client of the appliance described by `info`.
    pub fn new(info: RunInfo) -> Client {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap_or_default();
        Client { http, info }
    }

    /// The appliance.
    pub fn info(&self) -> &RunInfo {
        &self.info
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = req
            .bearer_auth(&self.info.token)
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                pool: self.info.pool.clone(),
                url: self.info.url.clone(),
                source,
            })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Decode {
            method,
            path: path.into(),
            detail: e.to_string(),
        })?;
        if !status.is_success() {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(ClientError::Api {
                method,
                path: path.into(),
                status: status.as_u16(),
                code: v["error"]["code"].as_str().unwrap_or("unknown").into(),
                message: v["error"]["message"]
                    .as_str()
                    .map_or_else(|| String::from_utf8_lossy(&bytes).into_owned(), Into::into),
            });
        }
        let bytes = if bytes.is_empty() {
            &b"null"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes).map_err(|e| ClientError::Decode {
            method,
            path: path.into(),
            detail: e.to_string(),
        })
    }

    /// `GET path`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.info.url);
        self.send("GET", path, self.http.get(url)).await
    }

    /// `POST path` with a JSON body (or none).
    pub async fn post<T: DeserializeOwned, B: Serialize>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.info.url);
        let mut req = self.http.post(url);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send("POST", path, req).await
    }
}
