// hello-js: answers every request with a greeting from its config.
//
// renga's JavaScript buildpack bundles this module and turns it into a
// wasi:http component with componentize-js. Config vars
// (`renga config:set GREETING=Howdy`) come from wasi:cli/environment.
import { getEnvironment } from "wasi:cli/environment@0.2.10";

function configVar(name, fallback) {
  const found = getEnvironment().find(([key]) => key === name);
  return found ? found[1] : fallback;
}

addEventListener("fetch", (event) => {
  const greeting = configVar("GREETING", "hello");
  event.respondWith(
    new Response(`${greeting} from renga\n`, {
      headers: { "content-type": "text/plain; charset=utf-8" },
    }),
  );
});
