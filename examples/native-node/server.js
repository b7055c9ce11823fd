// native-node: a Node.js HTTP server run as a native process.
//
// renga's native Node.js buildpack installs package.json's dependencies
// with `npm ci`; the Procfile's `web: node server.js` runs in a sandbox,
// bound to $PORT, behind renga's router. Config vars are its environment;
// with IGNORE_SIGTERM=1 it ignores SIGTERM (the platform's tests use it
// to see SIGKILL and R12 after the grace period).
const http = require("http");

if (process.env.IGNORE_SIGTERM === "1") {
  process.on("SIGTERM", () => console.log("got SIGTERM, ignoring it"));
} else {
  process.on("SIGTERM", () => {
    console.log("got SIGTERM, closing");
    server.close(() => process.exit(0));
  });
}

const server = http.createServer((req, res) => {
  const greeting = process.env.GREETING || "hello";
  res.setHeader("Content-Type", "text/plain; charset=utf-8");
  if (req.url === "/headers") {
    res.end(JSON.stringify(req.headers));
    return;
  }
  res.end(`${greeting} from renga (node)\n`);
});

server.listen(Number(process.env.PORT), () => {
  console.log(`listening on ${process.env.PORT} as ${process.env.DYNO}`);
});
