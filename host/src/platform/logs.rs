//! Log sessions: who may read an app's log, and what.

use std::time::{Duration, Instant};

use crate::auth::User;
use crate::logplex::AppLog;

use super::{Platform, PlatformError, Result};

/// A live log session: who may read it, and what.
#[derive(Clone, Debug)]
pub struct LogSession {
    pub app_id: String,
    pub user_id: String,
    pub lines: usize,
    pub tail: bool,
    pub created: Instant,
}

/// Log sessions must be opened soon after they are created.
const LOG_SESSION_TTL: Duration = Duration::from_secs(300);

impl Platform {
    // ---- logs --------------------------------------------------------------

    pub fn create_log_session(
        &self,
        user: &User,
        name_or_id: &str,
        lines: usize,
        tail: bool,
    ) -> Result<String> {
        let app = self.app(user, name_or_id)?;
        let id = crate::auth::new_token();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.created.elapsed() < LOG_SESSION_TTL);
        sessions.insert(
            id.clone(),
            LogSession {
                app_id: app.id,
                user_id: user.id.clone(),
                lines: lines.min(crate::logplex::DEFAULT_BUFFER_LINES),
                tail,
                created: Instant::now(),
            },
        );
        Ok(id)
    }

    /// Opens a log session (once): the app's log, if the session is the
    /// user's. Another user's attempt leaves the session untouched.
    pub fn open_log_session(&self, user: &User, id: &str) -> Result<(LogSession, AppLog)> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let theirs = sessions
            .get(id)
            .is_some_and(|s| s.user_id == user.id && s.created.elapsed() < LOG_SESSION_TTL);
        let session = if theirs { sessions.remove(id) } else { None };
        match session {
            Some(session) => {
                let log = self.logs.app(&session.app_id);
                Ok((session, log))
            }
            None => Err(PlatformError::NotFound(
                "Couldn't find that log session".into(),
            )),
        }
    }
}
