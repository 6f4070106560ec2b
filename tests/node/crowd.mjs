// Many socket.io-clients at once, each counting the events it receives.
//
//   node crowd.mjs '{"url": "...", "clients": 500, "expect": 20}'
//
// Prints {"type": "ready", "clients": N} once every client is connected, then
// {"type": "done", "clients": N, "events": ..., "p50_ms", "max_ms"} once every client has
// received `expect` `business:created` events with the names the test wrote ("crowd-0"...),
// in order; a client that gets one out of order or twice prints {"type": "error"}.
import { io } from "socket.io-client";

const opts = JSON.parse(process.argv[2]);
const out = (line) => process.stdout.write(JSON.stringify(line) + "\n");
const transports = opts.transports ?? ["websocket", "polling"];

let connected = 0;
let complete = 0;
const delays = [];
const sockets = [];
for (let i = 0; i < opts.clients; i++) {
  const socket = io(opts.url, { transports, forceNew: true, reconnection: false });
  let next = 0;
  socket.once("connect", () => {
    connected += 1;
    if (connected === opts.clients) out({ type: "ready", clients: connected });
  });
  socket.on("connect_error", (err) => out({ type: "error", client: i, message: err.message }));
  socket.on("disconnect", (reason) => {
    if (next < opts.expect) out({ type: "error", client: i, message: `disconnected: ${reason}` });
  });
  socket.on("business:created", (b) => {
    if (b.name !== `crowd-${next}`) {
      out({ type: "error", client: i, message: `expected crowd-${next}, got ${b.name}` });
      return;
    }
    delays.push(Date.now() - Date.parse(b.created_at));
    next += 1;
    if (next === opts.expect) {
      complete += 1;
      if (complete === opts.clients) {
        delays.sort((a, b) => a - b);
        out({
          type: "done",
          clients: complete,
          events: delays.length,
          p50_ms: delays[Math.floor(delays.length / 2)],
          max_ms: delays[delays.length - 1],
        });
        for (const s of sockets) s.close();
        setTimeout(() => process.exit(0), 100);
      }
    }
  });
  sockets.push(socket);
}
