//! Live updates over Server-Sent Events: every appliance event (state
//! changes, job progress, alerts) as an `event` message and an I/O statistics
//! snapshot as a `stats` message once per `stats_interval`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast;

use crate::Ctx;
use crate::appliance::{Appliance, Event};

struct StreamState {
    rx: broadcast::Receiver<Event>,
    tick: tokio::time::Interval,
    app: Arc<dyn Appliance>,
    shutdown: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Completes when the server shuts down (never without a signal).
async fn stopped(rx: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    match rx {
        Some(rx) => {
            let _ = rx.wait_for(|v| *v).await;
        }
        None => futures::future::pending::<()>().await,
    }
}

/// Live event stream (SSE). Messages: `event` (an [`Event`] as JSON),
/// `stats` (an [`crate::appliance::IoStats`] as JSON) and `lagged` (the client
/// missed events and should refetch).
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events",
    responses((status = 200, body = String, content_type = "text/event-stream",
        description = "SSE stream of `event`, `stats` and `lagged` messages")))]
pub async fn stream(
    State(ctx): State<Ctx>,
    shutdown: Option<axum::Extension<crate::Shutdown>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut tick = tokio::time::interval(ctx.cfg.stats_interval.max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let st = StreamState {
        rx: ctx.app.subscribe(),
        tick,
        app: ctx.app.clone(),
        shutdown: shutdown.map(|s| (s.0).0),
    };
    let s = futures::stream::unfold(st, |mut st| async move {
        loop {
            tokio::select! {
                _ = stopped(&mut st.shutdown) => return None,
                r = st.rx.recv() => match r {
                    Ok(ev) => {
                        let msg = SseEvent::default()
                            .event("event")
                            .id(ev.id.to_string())
                            .json_data(&ev);
                        match msg {
                            Ok(m) => return Some((Ok(m), st)),
                            Err(e) => tracing::warn!(error = %e, "cannot encode event"),
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let m = SseEvent::default().event("lagged").data(n.to_string());
                        return Some((Ok(m), st));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = st.tick.tick() => {
                    match st.app.stats().await {
                        Ok(stats) => match SseEvent::default().event("stats").json_data(&stats) {
                            Ok(m) => return Some((Ok(m), st)),
                            Err(e) => tracing::warn!(error = %e, "cannot encode stats"),
                        },
                        Err(e) => tracing::debug!(error = %e, "stats unavailable"),
                    }
                }
            }
        }
    });
    Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
