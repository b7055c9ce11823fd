"""counter-python: every request to / counts one hit in the app's key-value
add-on and answers with the count so far.

    $ renga addons:create renga-kv -a counter
    $ git push renga main
    $ curl http://counter.localhost:8080/
    hits: 1

`app.json` lists the add-on (`"addons": ["renga-kv"]`), so renga's Python
buildpack builds this module against `wasi:keyvalue` as well as
`wasi:http`; componentize-py generates the bindings it imports below.
`increment` is atomic, so the count stays exact across dynos and
concurrent requests.
"""

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import atomics, wasi_keyvalue_store as kv
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


def count(path: str) -> tuple[int, str]:
    """The response for a path: `/` counts a hit, `/page/NAME` counts that
    page on its own."""
    if path == "/":
        key = "hits"
    elif path.startswith("/page/"):
        key = "hits:" + path[len("/page/"):]
    else:
        return 404, "not found\n"
    try:
        bucket = kv.open("default")
        hits = atomics.increment(bucket, key, 1)
    except Err as e:
        return 503, f"the key-value add-on failed: {e.value}\n"
    return 200, f"hits: {hits}\n"


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        status, text = count((request.path_with_query() or "/").split("?")[0])
        response = OutgoingResponse(
            Fields.from_list([("content-type", b"text/plain; charset=utf-8")])
        )
        response.set_status_code(status)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with body.write() as stream:
            stream.blocking_write_and_flush(text.encode())
        OutgoingBody.finish(body, None)
