// The official socket.io-client 2.5 as a second chat client for chorus's
// Engine.IO v3 interop tests: connects to CHAT_URL (e.g. http://127.0.0.1:1234/chat)
// with the token CHAT_TOKEN in the query, joins as CHAT_NAME and prints every
// event it receives as one JSON line ({"event", "args"}), plus {"event":"connect"}.
// TRANSPORTS (comma-separated) picks the transports. Runs until stdin closes.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const io = require("socket.io-client");

const socket = io(process.env.CHAT_URL, {
  query: { token: process.env.CHAT_TOKEN },
  transports: (process.env.TRANSPORTS ?? "polling,websocket").split(","),
});
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");

socket.on("connect", () => {
  print({ event: "connect", id: socket.id });
  socket.emit("joinChat", { username: process.env.CHAT_NAME ?? "js" });
});
for (const name of ["onlineUsers", "userOnline", "joined", "newMessage", "userTyping", "userOffline", "exception"]) {
  socket.on(name, (...args) => print({ event: name, args }));
}
socket.on("error", (error) => print({ event: "error", args: [String(error)] }));
process.stdin.resume();
process.stdin.on("end", () => {
  socket.close();
  process.exit(0);
});
