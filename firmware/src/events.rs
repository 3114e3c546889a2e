//! The appliance's event log: a bounded history plus a live broadcast, feeding the console's
//! events page and its SSE stream.

use ingot_console::appliance::{Event, EventData, EventPage, EventQuery, Severity};
use ingot_console::{ApplianceError, ApplianceResult};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// How many events the history keeps.
const HISTORY: usize = 2000;

/// Events since start.
#[derive(Debug)]
pub struct EventLog {
    tx: broadcast::Sender<Event>,
    history: Mutex<(u64, VecDeque<Event>)>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            tx: broadcast::channel(256).0,
            history: Mutex::new((0, VecDeque::new())),
        }
    }
}

impl EventLog {
    /// Record and broadcast an event (also logged through tracing).
    pub fn emit(&self, severity: Severity, message: impl Into<String>, data: EventData) {
        let message = message.into();
        match severity {
            Severity::Info => tracing::info!(event = %message),
            Severity::Warning => tracing::warn!(event = %message),
            Severity::Critical => tracing::error!(event = %message),
        }
        let ev = {
            let mut h = self.history.lock();
            h.0 += 1;
            let ev = Event {
                id: h.0,
                time_ms: now_ms(),
                severity,
                message,
                data,
            };
            if !matches!(ev.data, EventData::JobProgress { .. }) {
                if h.1.len() == HISTORY {
                    h.1.pop_front();
                }
                h.1.push_back(ev.clone());
            }
            ev
        };
        // No subscriber is fine: nobody has the console open.
        let _ = self.tx.send(ev);
    }

    /// A live feed.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// A page of history, newest first.
    pub fn page(&self, q: &EventQuery) -> ApplianceResult<EventPage> {
        let limit = q.effective_limit()?;
        if q.before == Some(0) {
            return Err(ApplianceError::invalid(
                "before must be an event id above 0",
            ));
        }
        let h = self.history.lock();
        let mut events: Vec<Event> =
            h.1.iter()
                .rev()
                .filter(|e| q.before.is_none_or(|b| e.id < b))
                .filter(|e| q.severity.is_none_or(|s| e.severity >= s))
                .take(limit + 1)
                .cloned()
                .collect();
        let next_before = if events.len() > limit {
            events.truncate(limit);
            events.last().map(|e| e.id)
        } else {
            None
        };
        Ok(EventPage {
            events,
            next_before,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> EventData {
        EventData::Alert { device: None }
    }

    #[test]
    fn pages_filter_and_broadcast() {
        let log = EventLog::default();
        let mut rx = log.subscribe();
        for i in 0..5 {
            let sev = if i % 2 == 0 {
                Severity::Info
            } else {
                Severity::Critical
            };
            log.emit(sev, format!("e{i}"), alert());
        }
        assert_eq!(rx.try_recv().unwrap().message, "e0");
        let p = log
            .page(&EventQuery {
                limit: Some(2),
                ..EventQuery::default()
            })
            .unwrap();
        assert_eq!(
            p.events.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![5, 4]
        );
        let p2 = log
            .page(&EventQuery {
                before: p.next_before,
                limit: Some(10),
                ..EventQuery::default()
            })
            .unwrap();
        assert_eq!(
            p2.events.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![3, 2, 1]
        );
        assert_eq!(p2.next_before, None);
        let crit = log
            .page(&EventQuery {
                severity: Some(Severity::Warning),
                ..EventQuery::default()
            })
            .unwrap();
        assert_eq!(crit.events.len(), 2);
        assert!(
            log.page(&EventQuery {
                limit: Some(0),
                ..EventQuery::default()
            })
            .is_err()
        );
    }
}
