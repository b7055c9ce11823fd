//! Heroku's `Range` header, which pages and orders a list endpoint's
//! answer: `Range: version ..; order=desc, max=15`, `Range: id ..; max=1000;`,
//! `Range: name ..`, `Range: version 3..10`, and `Range: id ]abc..` (after
//! `abc`, as a `Next-Range` says). Parsed into a [`Range`], then applied
//! to a list answer by [`paged`], with Heroku's `Content-Range` and
//! `Next-Range` (and 206 while more remain).

use std::cmp::Ordering;
use std::str::FromStr;

use axum::extract::OptionalFromRequestParts;
use axum::response::Response;
use http::header::RANGE;
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use serde_json::Value;

use super::ApiError;
use super::body::{ApiResult, json_response};

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

/// A list answer as `range` asks: ordered by its field, from its start
/// (inclusive, or after it for `]start`) to its end in that order, at most
/// `max` items; 206 with `Next-Range` while more remain, 200 at the last
/// page, `Content-Range` naming the page's first and last values. Without a
/// `Range`, every item in the list's own order. Linear in the list's size
/// (lists are bounded where they are kept).
pub(super) fn paged(items: Vec<Value>, range: Option<Range>) -> ApiResult {
    let Some(range) = range else {
        return super::body::ok(Value::Array(items));
    };
    let field = range.field.as_str();
    if items.iter().any(|item| item.get(field).is_none()) {
        return Err(ApiError::bad_request(format!(
            "Invalid Range header: this list cannot be ordered by {field}"
        )));
    }
    let ordered = |a: &Value, b: &Value| {
        let order = compare(&a[field], &b[field]);
        match range.order {
            Order::Asc => order,
            Order::Desc => order.reverse(),
        }
    };
    let mut items = items;
    items.sort_by(|a, b| ordered(a, b));
    let bound = |text: &str| -> Value {
        text.parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .filter(|_| items.first().is_some_and(|i| i[field].is_number()))
            .map_or_else(|| Value::String(text.to_string()), Value::Number)
    };
    let start = range.start.as_deref().map(bound);
    let end = range.end.as_deref().map(bound);
    let mut page: Vec<Value> = items
        .into_iter()
        .filter(|item| {
            let direction = |b: &Value| match range.order {
                Order::Asc => compare(&item[field], b),
                Order::Desc => compare(b, &item[field]),
            };
            let after_start = start.as_ref().is_none_or(|s| match direction(s) {
                Ordering::Greater => true,
                Ordering::Equal => !range.exclusive_start,
                Ordering::Less => false,
            });
            let before_end = end
                .as_ref()
                .is_none_or(|e| direction(e) != Ordering::Greater);
            after_start && before_end
        })
        .collect();
    let more = page.len() > range.max;
    page.truncate(range.max);
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let order = match range.order {
        Order::Asc => "asc",
        Order::Desc => "desc",
    };
    let first = page.first().map(|i| text(&i[field]));
    let last = page.last().map(|i| text(&i[field]));
    let status = if more {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut response: Response = json_response(status, &Value::Array(page));
    let headers = response.headers_mut();
    if let (Some(first), Some(last)) = (&first, &last)
        && let Ok(value) = HeaderValue::from_str(&format!("{field} {first}..{last}"))
    {
        headers.insert("content-range", value);
    }
    if more
        && let Some(last) = &last
        && let Ok(value) = HeaderValue::from_str(&format!(
            "{field} ]{last}..; order={order}, max={}",
            range.max
        ))
    {
        headers.insert("next-range", value);
    }
    Ok(response)
}

/// Numbers by value, everything else by its text.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        _ => match (a.as_str(), b.as_str()) {
            (Some(x), Some(y)) => x.cmp(y),
            _ => a.to_string().cmp(&b.to_string()),
        },
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

    fn page(items: &[Value], header: &str) -> (u16, Vec<Value>, Option<String>, Option<String>) {
        let response = paged(items.to_vec(), Some(range(header))).unwrap();
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|v: &HeaderValue| v.to_str().unwrap().to_string())
        };
        let (status, content, next) = (
            response.status().as_u16(),
            header("content-range"),
            header("next-range"),
        );
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(axum::body::to_bytes(response.into_body(), 1 << 20));
        let list: Vec<Value> = serde_json::from_slice(&body.unwrap()).unwrap();
        (status, list, content, next)
    }

    #[test]
    fn lists_page_as_herokus_clients_expect() {
        let releases: Vec<Value> = (1..=20)
            .map(|v| serde_json::json!({ "version": v }))
            .collect();
        let versions = |list: &[Value]| {
            list.iter()
                .map(|r| r["version"].as_u64().unwrap())
                .collect::<Vec<_>>()
        };
        // `config:set` asks for the newest release only.
        let (status, list, content, next) = page(&releases, "version ..; order=desc,max=1");
        assert_eq!((status, versions(&list)), (206, vec![20]));
        assert_eq!(content.as_deref(), Some("version 20..20"));
        assert_eq!(next.as_deref(), Some("version ]20..; order=desc, max=1"));
        // Following Next-Range walks the whole list once, then answers 200.
        let mut seen = Vec::new();
        let mut header = "version ..; max=7".to_string();
        loop {
            let (status, list, _, next) = page(&releases, &header);
            seen.extend(versions(&list));
            match next {
                Some(next) => {
                    assert_eq!(status, 206);
                    header = next;
                }
                None => {
                    assert_eq!(status, 200);
                    break;
                }
            }
        }
        assert_eq!(seen, (1..=20).collect::<Vec<_>>());
        let (_, list, _, _) = page(&releases, "version 3..5");
        assert_eq!(versions(&list), vec![3, 4, 5]);
        let (_, list, _, _) = page(&releases, "version 5..3; order=desc");
        assert_eq!(versions(&list), vec![5, 4, 3]);
        // Strings order as text; a field the items lack is refused.
        let names: Vec<Value> = ["b", "a", "c"]
            .iter()
            .map(|n| serde_json::json!({ "name": n }))
            .collect();
        let (status, list, _, _) = page(&names, "name ..");
        assert_eq!(status, 200);
        assert_eq!(list[0]["name"], "a");
        assert!(paged(names, Some(range("version .."))).is_err());
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
