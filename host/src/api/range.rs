//! Heroku's `Range` header, which pages and orders a list endpoint's
//! answer: `Range: version ..; order=desc, max=15`, `Range: id ..; max=1000;`,
//! `Range: name ..`, `Range: version 3..10`, and `Range: id ]abc..` (after
//! `abc`, as a `Next-Range` says). Parsed here once, into a [`Range`];
//! never applied here.

use std::str::FromStr;

use axum::extract::OptionalFromRequestParts;
use http::header::RANGE;
use http::request::Parts;

use super::ApiError;

/// How many items a list gives when the request does not say.
pub const DEFAULT_MAX: usize = 200;

/// The most a list gives in one answer, whatever the request says.
pub const MAX_MAX: usize = 1000;

/// One `Range` header: the field to order by, the bounds on it (both
/// inclusive unless `exclusive_start`), the order and the page size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    pub field: String,
    pub start: Option<String>,
    /// `]start..`: the page begins after `start`.
    pub exclusive_start: bool,
    pub end: Option<String>,
    pub order: Order,
    /// At least 1, at most [`MAX_MAX`].
    pub max: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("Invalid Range header {header:?}: {reason}")]
pub struct InvalidRange {
    header: String,
    reason: &'static str,
}

impl FromStr for Range {
    type Err = InvalidRange;

    fn from_str(header: &str) -> Result<Range, InvalidRange> {
        let invalid = |reason| InvalidRange {
            header: header.to_string(),
            reason,
        };
        let (spec, params) = header.split_once(';').unwrap_or((header, ""));
        let spec = spec.trim();
        let (field, bounds) = spec.split_once(char::is_whitespace).unwrap_or((spec, ".."));
        if field.is_empty()
            || !field
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(invalid("it starts with a field name, as in `id ..`"));
        }
        let bounds = bounds.trim();
        if bounds.contains(char::is_whitespace) {
            return Err(invalid("the bounds are one word, as in `3..10`"));
        }
        let (start, end) = bounds
            .split_once("..")
            .ok_or_else(|| invalid("the bounds are `START..END`, either of them left out"))?;
        let (start, exclusive_start) = match start.strip_prefix(']') {
            Some(after) => (after, true),
            None => (start, false),
        };
        let bound = |b: &str| (!b.is_empty()).then(|| b.to_string());
        let mut range = Range {
            field: field.to_string(),
            start: bound(start),
            exclusive_start,
            end: bound(end),
            order: Order::Asc,
            max: DEFAULT_MAX,
        };
        if exclusive_start && range.start.is_none() {
            return Err(invalid("`]` needs a start to go after"));
        }
        for param in params.split([',', ';']).map(str::trim) {
            if param.is_empty() {
                continue;
            }
            let (key, value) = param
                .split_once('=')
                .ok_or_else(|| invalid("its parameters are `max=N` and `order=asc|desc`"))?;
            match (key.trim(), value.trim()) {
                ("max", n) => {
                    range.max = match n.parse::<usize>() {
                        Ok(0) | Err(_) => return Err(invalid("max is a number from 1")),
                        Ok(n) => n.min(MAX_MAX),
                    };
                }
                ("order", "asc") => range.order = Order::Asc,
                ("order", "desc") => range.order = Order::Desc,
                ("order", _) => return Err(invalid("order is asc or desc")),
                _ => return Err(invalid("its parameters are `max=N` and `order=asc|desc`")),
            }
        }
        Ok(range)
    }
}

/// `Option<Range>` in a handler: `None` without the header, 400 for one
/// that does not parse.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Range {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Range>, ApiError> {
        let Some(value) = parts.headers.get(RANGE) else {
            return Ok(None);
        };
        let text = value
            .to_str()
            .map_err(|_| ApiError::bad_request("Invalid Range header: it is not text"))?;
        text.parse()
            .map(Some)
            .map_err(|e: InvalidRange| ApiError::bad_request(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(header: &str) -> Range {
        header.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn herokus_clients_ranges_parse() {
        assert_eq!(
            range("version ..; order=desc, max=15"),
            Range {
                field: "version".into(),
                start: None,
                exclusive_start: false,
                end: None,
                order: Order::Desc,
                max: 15,
            }
        );
        let ids = range("id ..; max=1000;");
        assert_eq!((ids.field.as_str(), ids.max), ("id", 1000));
        assert_eq!(ids.order, Order::Asc);
        let names = range("name ..");
        assert_eq!(
            (names.start, names.end, names.max),
            (None, None, DEFAULT_MAX)
        );
        let versions = range("version 3..10");
        assert_eq!(versions.start.as_deref(), Some("3"));
        assert_eq!(versions.end.as_deref(), Some("10"));
        assert_eq!(range("version 3..").end, None);
        assert_eq!(range("  name  ..  ; order=asc ").field, "name");
    }

    #[test]
    fn a_next_range_starts_after_its_start() {
        let next = range("id ]01234..; max=200");
        assert_eq!(next.start.as_deref(), Some("01234"));
        assert!(next.exclusive_start);
        assert!(!range("id 01234..").exclusive_start);
    }

    #[test]
    fn max_is_capped_at_a_thousand() {
        assert_eq!(range("id ..; max=5000").max, MAX_MAX);
    }

    #[test]
    fn malformed_ranges_are_refused() {
        for bad in [
            "",
            "bytes=0-100",
            "id 3",
            "id ..; max=0",
            "id ..; max=many",
            "id ..; order=sideways",
            "id ..; limit=3",
            "id ..; max",
            "id ]..",
            "na me ..",
        ] {
            assert!(bad.parse::<Range>().is_err(), "{bad:?} parsed");
        }
    }

    async fn extracted(header: Option<&str>) -> Result<Option<Range>, ApiError> {
        let mut request = http::Request::builder();
        if let Some(header) = header {
            request = request.header(RANGE, header);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        <Range as OptionalFromRequestParts<()>>::from_request_parts(&mut parts, &()).await
    }

    #[tokio::test]
    async fn the_header_is_optional_but_must_parse() {
        assert_eq!(extracted(None).await.unwrap(), None);
        assert_eq!(
            extracted(Some("name ..")).await.unwrap().map(|r| r.field),
            Some("name".to_string())
        );
        let refused = extracted(Some("id 3")).await.unwrap_err();
        assert_eq!(
            axum::response::IntoResponse::into_response(refused).status(),
            http::StatusCode::BAD_REQUEST
        );
    }
}
