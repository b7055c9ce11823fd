//! Formation, dynos and log sessions: what runs for an app, and who may
//! read its log.

use std::time::{Duration, Instant};

use crate::auth::User;
use crate::formation::{Formation, MAX_QUANTITY};
use crate::logplex::AppLog;
use crate::procfile::ProcessType;
use crate::release::Release;

use super::{Platform, PlatformError, Result, procfile_of};

/// What is running for an app right now.
#[derive(Clone, Debug)]
pub struct Running {
    pub release: Release,
    pub dynos: Vec<RunningDyno>,
}

#[derive(Clone, Debug)]
pub struct RunningDyno {
    pub name: String,
    pub kind: String,
    pub command: String,
    pub size: String,
    pub started_at: u64,
}

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
    // ---- formation and dynos ---------------------------------------------------

    pub fn formation(&self, user: &User, name_or_id: &str) -> Result<Vec<Formation>> {
        let app = self.app(user, name_or_id)?;
        Ok(self.formations.list(&app.id)?)
    }

    pub async fn scale(
        &self,
        user: &User,
        name_or_id: &str,
        kind: &str,
        quantity: u32,
    ) -> Result<Formation> {
        let app = self.app(user, name_or_id)?;
        let _lock = self.lock(&app.id).await;
        let kind: ProcessType =
            kind.parse()
                .map_err(|e: crate::procfile::InvalidProcessType| {
                    PlatformError::Invalid(e.to_string())
                })?;
        if quantity > MAX_QUANTITY {
            return Err(PlatformError::Invalid(format!(
                "Quantity {quantity} is more than the {MAX_QUANTITY} dynos a process type may have"
            )));
        }
        let release = self.current_release(&app)?;
        let declared = match &release.slug {
            Some(slug_id) => match self.slugs.find(&app.id, slug_id)? {
                Some(slug) => procfile_of(&slug)?.get(&kind).is_some(),
                None => false,
            },
            None => false,
        };
        if !declared {
            return Err(PlatformError::NotFound(format!(
                "Couldn't find that process type ({kind}): the current release does not declare it"
            )));
        }
        if !kind.is_web() {
            return Err(PlatformError::Invalid(format!(
                "Only web dynos run on this renga for now; {kind} processes arrive with worker dynos"
            )));
        }
        let formation = self.formations.set(&app.id, &kind, quantity)?;
        self.db.flush().await?;
        self.activate(&app, &release).await?;
        self.say(
            &app,
            format!(
                "Scaled to {kind}@{quantity}:{} by {}",
                formation.size, user.name
            ),
        );
        Ok(formation)
    }

    pub fn dynos(&self, user: &User, name_or_id: &str) -> Result<Running> {
        let app = self.app(user, name_or_id)?;
        let running = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&app.id)
            .cloned();
        match running {
            Some(running) => Ok(running),
            None => Ok(Running {
                release: self.current_release(&app)?,
                dynos: Vec::new(),
            }),
        }
    }

    /// Restarts every dyno, or those of one type, or one dyno.
    pub async fn restart(&self, user: &User, name_or_id: &str, which: Option<&str>) -> Result<()> {
        let app = self.app(user, name_or_id)?;
        let _lock = self.lock(&app.id).await;
        let running = self.dynos(user, name_or_id)?;
        if let Some(which) = which {
            let known = running
                .dynos
                .iter()
                .any(|d| d.name == which || d.kind == which);
            if !known {
                return Err(PlatformError::NotFound(format!(
                    "Couldn't find that dyno or process type: {which}"
                )));
            }
        }
        let release = self.current_release(&app)?;
        self.activate(&app, &release).await?;
        self.say(
            &app,
            format!("Restart {} by {}", which.unwrap_or("all dynos"), user.name),
        );
        Ok(())
    }

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

    /// Opens a log session (once): the app's log, if the session is the user's.
    pub fn open_log_session(&self, user: &User, id: &str) -> Result<(LogSession, AppLog)> {
        let session = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        match session {
            Some(session)
                if session.user_id == user.id && session.created.elapsed() < LOG_SESSION_TTL =>
            {
                let log = self.logs.app(&session.app_id);
                Ok((session, log))
            }
            _ => Err(PlatformError::NotFound(
                "Couldn't find that log session".into(),
            )),
        }
    }
}
