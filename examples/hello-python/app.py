"""hello-python: answers every request with a greeting from its config.

renga's Python buildpack turns this module into a wasi:http component with
componentize-py. `IncomingHandler.handle` runs once per request, in a fresh
instance; config vars (`renga config:set GREETING=Howdy`) are its
environment.
"""

import os

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        greeting = os.environ.get("GREETING", "hello")
        response = OutgoingResponse(
            Fields.from_list([("content-type", b"text/plain; charset=utf-8")])
        )
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with body.write() as stream:
            stream.blocking_write_and_flush(f"{greeting} from renga\n".encode())
        OutgoingBody.finish(body, None)
