//! Path extractors: the `{app}` a route names, looked up once for the caller,
//! and the other path parameters, refused in Heroku's shape when they cannot
//! be read.

use axum::extract::{FromRequestParts, Path, RawPathParams};
use http::request::Parts;
use serde::de::DeserializeOwned;

use super::auth::Caller;
use super::{Api, ApiError};
use crate::app::App;
use crate::platform::PlatformError;

/// The app in the route's `{app}`, as the caller may see it: 404 for an app
/// that does not exist or is someone else's. `name` is what the request
/// said (a name or an id), for the platform operations that take one.
pub(super) struct AppRef {
    pub name: String,
    pub app: App,
}

impl FromRequestParts<Api> for AppRef {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<AppRef, ApiError> {
        let Caller(user) = Caller::from_request_parts(parts, api).await?;
        let params = RawPathParams::from_request_parts(parts, api).await?;
        let name = params
            .iter()
            .find_map(|(key, value)| (key == "app").then(|| value.to_string()))
            .ok_or_else(|| {
                PlatformError::Internal(anyhow::anyhow!("the route {} has no {{app}}", parts.uri))
            })?;
        let app = api.platform.app(&user, &name)?;
        Ok(AppRef { name, app })
    }
}

/// The route's path parameters, in order (`{app}` included): a `String`
/// for one, a tuple for more.
pub(super) struct Param<T>(pub T);

impl<S, T> FromRequestParts<S> for Param<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Param<T>, ApiError> {
        let Path(value) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(Param(value))
    }
}
