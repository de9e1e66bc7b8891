// Drives the official socket.io-client 4.8.3 through a JSON plan, for chorus's
// interop tests, and prints everything the client observes, one JSON line each.
//
// Usage: node chat-client.mjs '<plan json>'
// Plan: {
//   "url": "http://127.0.0.1:1234",       // server origin
//   "namespace": "/chat",
//   "transports": ["websocket"],           // optional; default polling then upgrade
//   "upgrade": true,                       // optional
//   "query": {...}, "extraHeaders": {...}, "auth": {...},   // optional
//   "ca": "-----BEGIN CERTIFICATE-----...",   // optional: the CA to trust for https://
//   "steps": [
//     {"op": "emit", "event": "joinChat", "args": [{...}], "ack": false},
//     {"op": "emitWithAck", "event": "sendMessage", "args": [...], "timeoutMs": 1000},
//     {"op": "waitFor", "event": "joined", "count": 1, "timeoutMs": 5000},
//     {"op": "sleep", "ms": 100},
//     {"op": "disconnect"}
//   ]
// }
// Steps start once the namespace is connected (or refused). After the last
// step the process stays alive, still printing events, until stdin closes.
//
// Output lines: {"t": ms, "event": name, "args": [...]} for every event the
// server emits, plus {"t", "event": "connect", "id", "transport"},
// {"event": "connect_error", "message", "data"}, {"event": "upgrade", "transport"},
// {"event": "disconnect", "reason"}, {"event": "ack", "for", "args"},
// {"event": "ack_timeout", "for"}, {"event": "wait_timeout", "for", "count"},
// {"event": "steps_done"}.
import { io } from "socket.io-client";

const plan = JSON.parse(process.argv[2]);
const started = Date.now();
const counts = new Map();
const waiters = [];

function print(line) {
  process.stdout.write(JSON.stringify({ t: Date.now() - started, ...line }) + "\n");
}

function record(event) {
  counts.set(event, (counts.get(event) ?? 0) + 1);
  for (const w of [...waiters]) w();
}

function waitFor(event, count, timeoutMs) {
  return new Promise((resolve) => {
    const check = () => {
      if ((counts.get(event) ?? 0) >= count) {
        waiters.splice(waiters.indexOf(check), 1);
        clearTimeout(timer);
        resolve(true);
      }
    };
    const timer = setTimeout(() => {
      waiters.splice(waiters.indexOf(check), 1);
      resolve(false);
    }, timeoutMs);
    waiters.push(check);
    check();
  });
}

const options = { reconnection: false, forceNew: true };
for (const key of ["transports", "upgrade", "query", "extraHeaders", "auth", "ca"]) {
  if (plan[key] !== undefined) options[key] = plan[key];
}
const socket = io(plan.url + (plan.namespace ?? "/"), options);

socket.onAny((event, ...args) => {
  print({ event, args });
  record(event);
});
// The manager opens its engine synchronously (autoConnect), so it exists here.
socket.io.engine.on("upgrade", (transport) => print({ event: "upgrade", transport: transport.name }));
socket.on("disconnect", (reason) => {
  print({ event: "disconnect", reason });
  record("disconnect");
});

async function runSteps() {
  for (const step of plan.steps ?? []) {
    switch (step.op) {
      case "emit":
        socket.emit(step.event, ...(step.args ?? []));
        break;
      case "emitWithAck":
        try {
          const reply = await socket.timeout(step.timeoutMs ?? 2000).emitWithAck(step.event, ...(step.args ?? []));
          print({ event: "ack", for: step.event, args: [reply] });
        } catch {
          print({ event: "ack_timeout", for: step.event });
        }
        break;
      case "waitFor":
        if (!(await waitFor(step.event, step.count ?? 1, step.timeoutMs ?? 5000))) {
          print({ event: "wait_timeout", for: step.event, count: step.count ?? 1 });
        }
        break;
      case "sleep":
        await new Promise((r) => setTimeout(r, step.ms));
        break;
      case "disconnect":
        socket.disconnect();
        break;
      default:
        throw new Error(`unknown step ${JSON.stringify(step)}`);
    }
  }
  print({ event: "steps_done" });
}

let running = false;
function start() {
  if (running) return;
  running = true;
  runSteps().catch((e) => {
    print({ event: "script_error", message: String(e) });
    process.exit(2);
  });
}

socket.on("connect", () => {
  print({ event: "connect", id: socket.id, transport: socket.io.engine.transport.name });
  record("connect");
  start();
});
socket.on("connect_error", (err) => {
  print({ event: "connect_error", message: err.message, data: err.data ?? null });
  record("connect_error");
  start();
});

process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
