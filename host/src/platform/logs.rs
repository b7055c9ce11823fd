//! Log sessions: a URL that shows an app's log, made for a user who may
//! read it.

use std::time::{Duration, Instant};

use crate::auth::User;
use crate::logplex::AppLog;

use super::{Platform, PlatformError, Result};

/// A log session: what its URL shows, for as long as it may be opened.
#[derive(Clone, Debug)]
pub struct LogSession {
    pub app_id: String,
    /// Who made it: it opens only while they may still read the app.
    pub user_id: String,
    pub lines: usize,
    pub tail: bool,
    /// Heroku's filters: `app` or `renga`/`heroku`; a dyno or process type.
    pub source: Option<String>,
    pub dyno: Option<String>,
    pub created: Instant,
}

/// What a client asks a log session to show.
#[derive(Clone, Debug, Default)]
pub struct LogRequest {
    pub lines: Option<usize>,
    pub tail: bool,
    pub source: Option<String>,
    pub dyno: Option<String>,
}

/// A log session's URL opens for this long after it is made (a tail that
/// is open goes on for as long as its client stays).
const LOG_SESSION_TTL: Duration = Duration::from_secs(300);

/// At most this many sessions wait to be opened per app, and server-wide;
/// the oldest of the app (or of the server) make room.
const MAX_LOG_SESSIONS_PER_APP: usize = 100;
const MAX_LOG_SESSIONS: usize = 10_000;

impl Platform {
    // ---- logs --------------------------------------------------------------

    /// Makes a session for an app's log; its id (64 random hex digits) is
    /// the only credential its URL needs.
    pub fn create_log_session(
        &self,
        user: &User,
        name_or_id: &str,
        request: LogRequest,
    ) -> Result<String> {
        let app = self.app(user, name_or_id)?;
        let id = crate::auth::new_token();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.created.elapsed() < LOG_SESSION_TTL);
        let apps = sessions.values().filter(|s| s.app_id == app.id).count();
        let oldest = |of_app: bool| {
            sessions
                .iter()
                .filter(|(_, s)| !of_app || s.app_id == app.id)
                .min_by_key(|(_, s)| s.created)
                .map(|(id, _)| id.clone())
        };
        let evict = if apps >= MAX_LOG_SESSIONS_PER_APP {
            oldest(true)
        } else if sessions.len() >= MAX_LOG_SESSIONS {
            oldest(false)
        } else {
            None
        };
        if let Some(evict) = evict {
            sessions.remove(&evict);
        }
        sessions.insert(
            id.clone(),
            LogSession {
                app_id: app.id,
                user_id: user.id.clone(),
                lines: request
                    .lines
                    .unwrap_or(100)
                    .min(crate::logplex::DEFAULT_BUFFER_LINES),
                tail: request.tail,
                source: request.source.filter(|s| !s.is_empty()),
                dyno: request.dyno.filter(|d| !d.is_empty()),
                created: Instant::now(),
            },
        );
        Ok(id)
    }

    /// Opens a log session by its id, while it has not expired and its
    /// maker may still read the app (it exists, and they still own or
    /// collaborate on it). It may be opened again (a client reconnecting),
    /// until it expires.
    pub fn open_log_session(&self, id: &str) -> Result<(LogSession, AppLog)> {
        let session = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .filter(|s| s.created.elapsed() < LOG_SESSION_TTL)
            .cloned();
        match session {
            Some(session) if self.may_read(&session)? => match self.logs.find(&session.app_id) {
                Some(log) => Ok((session, log)),
                None => Err(PlatformError::NotFound(
                    "Couldn't find that log session (its app is gone)".into(),
                )),
            },
            _ => Err(PlatformError::NotFound(
                "Couldn't find that log session (it may have expired)".into(),
            )),
        }
    }

    fn may_read(&self, session: &LogSession) -> Result<bool> {
        let Some(user) = self.auth.find(&session.user_id)? else {
            return Ok(false);
        };
        match self.app(&user, &session.app_id) {
            Ok(_) => Ok(true),
            Err(PlatformError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
