// hello.c: a wasi:http/proxy handler in C for the renga:app/http world.
// Reads GREETING through the generated wasi:cli/environment binding, so the
// core module imports only component-model interfaces: no preview1 adapter.
#include <stdlib.h>
#include <string.h>
#include "http.h"

// Copy the value of environment variable `name` into buf (NUL-terminated).
static const char *env_get(const char *name, char *buf, size_t cap) {
  http_list_tuple2_string_string_t env;
  wasi_cli_environment_get_environment(&env);
  const char *found = NULL;
  size_t name_len = strlen(name);
  for (size_t i = 0; i < env.len && !found; i++) {
    http_string_t k = env.ptr[i].f0, v = env.ptr[i].f1;
    if (k.len == name_len && memcmp(k.ptr, name, name_len) == 0 && v.len < cap) {
      memcpy(buf, v.ptr, v.len);
      buf[v.len] = '\0';
      found = buf;
    }
  }
  http_list_tuple2_string_string_free(&env);
  return found;
}

void exports_wasi_http_incoming_handler_handle(
    exports_wasi_http_incoming_handler_own_incoming_request_t request,
    exports_wasi_http_incoming_handler_own_response_outparam_t response_out) {
  wasi_http_types_incoming_request_drop_own(request);

  char greeting[200];
  if (!env_get("GREETING", greeting, sizeof greeting)) strcpy(greeting, "hello");
  char text[256];
  size_t n = strlen(greeting);
  memcpy(text, greeting, n);
  memcpy(text + n, " from renga\n", 12);
  n += 12;

  // Headers: content-type: text/plain (status defaults to 200).
  wasi_http_types_tuple2_field_name_field_value_t ct = {
      .f0 = {(uint8_t *)"content-type", 12},
      .f1 = {(uint8_t *)"text/plain", 10}};
  wasi_http_types_list_tuple2_field_name_field_value_t entries = {&ct, 1};
  wasi_http_types_own_fields_t headers;
  wasi_http_types_header_error_t header_err;
  if (!wasi_http_types_static_fields_from_list(&entries, &headers, &header_err))
    abort();

  wasi_http_types_own_outgoing_response_t response =
      wasi_http_types_constructor_outgoing_response(headers);
  wasi_http_types_own_outgoing_body_t body;
  wasi_http_types_method_outgoing_response_body(
      wasi_http_types_borrow_outgoing_response(response), &body);
  wasi_http_types_own_output_stream_t stream;
  wasi_http_types_method_outgoing_body_write(
      wasi_http_types_borrow_outgoing_body(body), &stream);

  // Send the head, then the body.
  wasi_http_types_result_own_outgoing_response_error_code_t result = {
      .is_err = false, .val.ok = response};
  wasi_http_types_static_response_outparam_set(response_out, &result);

  http_list_u8_t bytes = {(uint8_t *)text, n};  // at most 4096 bytes per call
  wasi_io_streams_stream_error_t stream_err;
  wasi_io_streams_method_output_stream_blocking_write_and_flush(
      wasi_io_streams_borrow_output_stream(stream), &bytes, &stream_err);
  wasi_io_streams_output_stream_drop_own(stream);  // drop the stream before finish
  wasi_http_types_error_code_t body_err;
  wasi_http_types_static_outgoing_body_finish(body, NULL, &body_err);
}
