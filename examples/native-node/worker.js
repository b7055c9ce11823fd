// A worker: says it is alive every second.
let n = 0;
setInterval(() => console.log(`tick ${++n} from ${process.env.DYNO}`), 1000);
process.on("SIGTERM", () => {
  console.log("worker got SIGTERM");
  process.exit(0);
});
