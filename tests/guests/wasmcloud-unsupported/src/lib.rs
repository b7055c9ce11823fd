//! A wasmCloud component that calls three interfaces renga does not provide
//! (`wasi:logging/logging`, `wasi:blobstore/blobstore`,
//! `wasmcloud:bus/lattice`) beside one it does (`wasi:keyvalue`). renga
//! must refuse it up front, naming all three.

use wasmcloud_component::http;
use wasmcloud_component::wasi::blobstore::blobstore;
use wasmcloud_component::wasi::keyvalue::store;
use wasmcloud_component::wasi::logging::logging::{log, Level};
use wasmcloud_component::wasmcloud::bus::lattice;

struct Unsupported;

http::export!(Unsupported);

impl http::Server for Unsupported {
    #[allow(refining_impl_trait)]
    fn handle(_request: http::IncomingRequest) -> http::Result<http::Response<String>> {
        log(Level::Info, "", "handling a request");
        let exists = blobstore::container_exists(&"photos".to_string()).unwrap_or(false);
        let linked = lattice::set_link_name("backup", vec![]).is_ok();
        let opened = store::open("default").is_ok();
        Ok(http::Response::new(format!("{exists} {linked} {opened}\n")))
    }
}
