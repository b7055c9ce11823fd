//! Object storage as wasmCloud components use it (`wasi:blobstore`, through
//! wasmCloud's own SDK), streamed both ways: a body is copied 64 KiB at a
//! time into the object's stream and out of it, never held whole.
//!
//! - `PUT /objects/NAME[?container=C]`    stores the request body as NAME,
//!   making the container if needed; `stored N`
//! - `GET /objects/NAME[?container=C]`    the object, streamed; 404 `missing`
//! - `GET /size/NAME[?container=C]`       its size in bytes; 404 `missing`
//! - `DELETE /objects/NAME[?container=C]` deletes it
//! - `GET /objects[?container=C]`         every name in the container, one
//!   per line, sorted
//!
//! The container is `objects` unless `container=` names another. Names in
//! the path and the query may be percent-encoded. Every error comes back
//! as a 500 whose body is the error, never a trap.

use std::io::{Read, Write};

use wasmcloud_component::http::{self, ErrorCode, StatusCode};
use wasmcloud_component::wasi::blobstore::blobstore;
use wasmcloud_component::wasi::blobstore::container::Container;
use wasmcloud_component::wasi::blobstore::types::{IncomingValue, OutgoingValue};
use wasmcloud_component::wasi::io::streams::{InputStream, OutputStream};

/// Bytes copied at a time.
const CHUNK: usize = 64 << 10;
/// The container when the query names none.
const DEFAULT_CONTAINER: &str = "objects";

struct Objects;

http::export!(Objects);

/// A response body: text, or an object streamed out of the blobstore.
enum Body {
    Text(String),
    Object(InputStream),
}

impl http::OutgoingBody for Body {
    fn write(
        self,
        body: wasmcloud_component::wasi::http::types::OutgoingBody,
        stream: OutputStream,
    ) -> std::io::Result<()> {
        match self {
            Body::Text(text) => http::OutgoingBody::write(text, body, stream),
            // Spliced from the object's stream into the response's.
            Body::Object(input) => http::OutgoingBody::write(input, body, stream),
        }
    }
}

type Reply = Result<(StatusCode, Body), String>;

impl http::Server for Objects {
    #[allow(refining_impl_trait)]
    fn handle(request: http::IncomingRequest) -> http::Result<http::Response<Body>> {
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or("").to_string();
        let container = param(&query, "container").unwrap_or_else(|| DEFAULT_CONTAINER.into());
        let method = request.method().as_str().to_string();
        let reply = match (method.as_str(), path.as_str()) {
            ("GET", "/objects") => list(&container),
            ("PUT", p) if p.starts_with("/objects/") => {
                put(&container, &unescape(&p[9..]), request.into_body())
            }
            ("GET", p) if p.starts_with("/objects/") => get(&container, &unescape(&p[9..])),
            ("DELETE", p) if p.starts_with("/objects/") => delete(&container, &unescape(&p[9..])),
            ("GET", p) if p.starts_with("/size/") => size(&container, &unescape(&p[6..])),
            _ => Ok((StatusCode::NOT_FOUND, Body::Text("not found\n".into()))),
        };
        let (status, body) = reply.unwrap_or_else(|e| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Body::Text(format!("{e}\n")),
            )
        });
        http::Response::builder()
            .status(status)
            .body(body)
            .map_err(|e| ErrorCode::InternalError(Some(e.to_string())))
    }
}

fn missing() -> (StatusCode, Body) {
    (StatusCode::NOT_FOUND, Body::Text("missing\n".into()))
}

/// The container, if it exists.
fn existing(name: &str) -> Result<Option<Container>, String> {
    let name = name.to_string();
    if !blobstore::container_exists(&name).map_err(|e| format!("container-exists: {e}"))? {
        return Ok(None);
    }
    blobstore::get_container(&name)
        .map(Some)
        .map_err(|e| format!("get-container: {e}"))
}

/// Streams `body` into the object `name`, in wasmCloud's order: the value
/// is given its name first, written, then finished (which stores it).
fn put(container: &str, name: &str, mut body: impl Read) -> Reply {
    let container = match existing(container)? {
        Some(container) => container,
        None => blobstore::create_container(&container.to_string())
            .map_err(|e| format!("create-container: {e}"))?,
    };
    let value = OutgoingValue::new_outgoing_value();
    let mut stream = value
        .outgoing_value_write_body()
        .map_err(|()| "outgoing-value-write-body was refused".to_string())?;
    container
        .write_data(&name.to_string(), &value)
        .map_err(|e| format!("write-data: {e}"))?;
    let mut buffer = vec![0; CHUNK];
    let mut stored = 0u64;
    loop {
        let n = body
            .read(&mut buffer)
            .map_err(|e| format!("reading the request body: {e}"))?;
        if n == 0 {
            break;
        }
        Write::write_all(&mut stream, &buffer[..n])
            .map_err(|e| format!("writing the value: {e}"))?;
        stored += n as u64;
    }
    stream
        .blocking_flush()
        .map_err(|e| format!("flushing the value: {e:?}"))?;
    // The stream goes before the value is finished, as the WIT asks.
    drop(stream);
    OutgoingValue::finish(value).map_err(|e| format!("finish: {e}"))?;
    Ok((StatusCode::OK, Body::Text(format!("stored {stored}\n"))))
}

/// The object `name`, as a stream the response is spliced from.
fn get(container: &str, name: &str) -> Reply {
    let Some(container) = existing(container)? else {
        return Ok(missing());
    };
    let name = name.to_string();
    if !container
        .has_object(&name)
        .map_err(|e| format!("has-object: {e}"))?
    {
        return Ok(missing());
    }
    let value = container
        .get_data(&name, 0, u64::MAX)
        .map_err(|e| format!("get-data: {e}"))?;
    let stream = IncomingValue::incoming_value_consume_async(value)
        .map_err(|e| format!("incoming-value-consume-async: {e}"))?;
    Ok((StatusCode::OK, Body::Object(stream)))
}

fn size(container: &str, name: &str) -> Reply {
    let Some(container) = existing(container)? else {
        return Ok(missing());
    };
    let name = name.to_string();
    if !container
        .has_object(&name)
        .map_err(|e| format!("has-object: {e}"))?
    {
        return Ok(missing());
    }
    let info = container
        .object_info(&name)
        .map_err(|e| format!("object-info: {e}"))?;
    Ok((StatusCode::OK, Body::Text(format!("{}\n", info.size))))
}

fn delete(container: &str, name: &str) -> Reply {
    let Some(container) = existing(container)? else {
        return Ok(missing());
    };
    container
        .delete_object(&name.to_string())
        .map_err(|e| format!("delete-object: {e}"))?;
    Ok((StatusCode::OK, Body::Text("deleted\n".into())))
}

fn list(container: &str) -> Reply {
    let Some(container) = existing(container)? else {
        return Ok(missing());
    };
    let listing = container
        .list_objects()
        .map_err(|e| format!("list-objects: {e}"))?;
    let mut names = Vec::new();
    loop {
        let (page, end) = listing
            .read_stream_object_names(100)
            .map_err(|e| format!("read-stream-object-names: {e}"))?;
        names.extend(page);
        if end {
            break;
        }
    }
    names.sort();
    Ok((
        StatusCode::OK,
        Body::Text(names.iter().map(|n| format!("{n}\n")).collect()),
    ))
}

/// The value of `key` in a query string, percent-decoded.
fn param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| unescape(v))
}

/// `%XX` escapes decoded (a malformed one is kept as it is).
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = text
            .get(i + 1..i + 3)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], escaped) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
