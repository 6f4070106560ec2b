// One socket.io-client, as the dashboard opens it, driven by the Rust tests.
//
//   node client.mjs '{"url": "http://127.0.0.1:PORT", "transports": ["websocket", "polling"]}'
//
// It prints one JSON object per line on stdout: {"type": "open", "transport"} (the
// Engine.IO connection), {"type": "connect", "sid", "transport"} (the socket),
// {"type": "upgrade", "transport"}, {"type": "engine_close", "reason", "description"}, {"type": "event", "name", "data"}, {"type": "ack",
// "value"}, {"type": "connect_error", "message"}, {"type": "disconnect", "reason"}.
// Each line on stdin is a command: {"emit": "ping", "ack": true} or {"close": true}.
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const opts = JSON.parse(process.argv[2] ?? "{}");
const out = (line) => process.stdout.write(JSON.stringify(line) + "\n");

const clientOpts = { reconnection: false, forceNew: true };
if (opts.transports) clientOpts.transports = opts.transports;
if (opts.auth) clientOpts.auth = opts.auth;
const socket = io(opts.url + (opts.namespace ?? ""), clientOpts);

// The manager opens the Engine.IO connection before the socket connects: the transport
// it starts on, and an upgrade, may come before "connect".
socket.io.on("open", () => {
  const engine = socket.io.engine;
  out({ type: "open", transport: engine.transport.name });
  engine.on("upgrade", (t) => out({ type: "upgrade", transport: t.name }));
  engine.on("close", (reason, description) =>
    out({ type: "engine_close", reason, description: String(description?.description ?? description?.message ?? description ?? "") }),
  );
});
socket.on("connect", () => {
  const engine = socket.io.engine;
  out({ type: "connect", sid: engine.id, transport: engine.transport.name });
});
socket.on("connect_error", (err) => out({ type: "connect_error", message: err.message }));
socket.on("disconnect", (reason) => out({ type: "disconnect", reason }));
socket.onAny((name, data) => out({ type: "event", name, data }));

createInterface({ input: process.stdin }).on("line", (line) => {
  const cmd = JSON.parse(line);
  if (cmd.emit) {
    if (cmd.ack) {
      socket.timeout(5000).emit(cmd.emit, (err, value) =>
        out(err ? { type: "ack_timeout" } : { type: "ack", value }),
      );
    } else {
      socket.emit(cmd.emit);
    }
  }
  if (cmd.close) {
    socket.close();
    setTimeout(() => process.exit(0), 50);
  }
}).on("close", () => process.exit(0));
