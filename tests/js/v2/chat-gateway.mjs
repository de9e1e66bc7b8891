// The chat gateway of docs/protocol.md section 2 (seed profile: the token is
// checked on each event, never at connect) written for the official socket.io
// 2.5 server, as chorus's Engine.IO v3 interop peer. Listens on 127.0.0.1
// port 0 and prints the port on its first line of stdout.
// JWT_SECRET verifies tokens; PING_INTERVAL / PING_TIMEOUT (ms) set the heartbeat.
import { createServer } from "node:http";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const io = require("socket.io");
const jwt = require("jsonwebtoken");

const secret = process.env.JWT_SECRET ?? "s3cret";
const httpServer = createServer();
const server = io(httpServer, {
  pingInterval: Number(process.env.PING_INTERVAL ?? 25000),
  pingTimeout: Number(process.env.PING_TIMEOUT ?? 20000),
});

// socket id -> username, in the order they joined (a rename keeps the place).
const users = new Map();
const chat = server.of("/chat");

// Section 3.3: the query parameter `token`, else `Authorization: Bearer <jwt>`.
function tokenOf(socket) {
  const query = socket.handshake.query.token;
  if (query) return Array.isArray(query) ? query[query.length - 1] : query;
  const header = socket.handshake.headers.authorization;
  if (header && header.startsWith("Bearer ")) return header.slice(7);
  return undefined;
}

function refuse(socket, pattern, args, message) {
  const cause = args.length > 0 ? { pattern, data: args[0] } : { pattern };
  socket.emit("exception", { status: "error", message, cause });
}

// The seed guard (section 3): every event verifies the handshake's token anew.
function guarded(socket, pattern, handler) {
  socket.on(pattern, (...args) => {
    if (typeof args[args.length - 1] === "function") args.pop(); // section 4: no acks
    const token = tokenOf(socket);
    if (!token) return refuse(socket, pattern, args, "未提供认证令牌");
    try {
      jwt.verify(token, secret, { algorithms: ["HS256", "HS384", "HS512"] });
    } catch {
      return refuse(socket, pattern, args, "无效的认证令牌");
    }
    if (args[0] === null || args.length === 0) {
      if (pattern === "joinChat" || users.get(socket.id)) {
        return refuse(socket, pattern, args, "Internal server error");
      }
      return;
    }
    handler(args[0], args.length);
  });
}

chat.on("connection", (socket) => {
  // Malformed packets (the conformance cases send some) are socket errors in 2.x.
  socket.on("error", () => {});
  socket.emit("onlineUsers", [...users.entries()]);
  guarded(socket, "joinChat", (data, count) => {
    const username = count === 1 && typeof data === "object" ? data.username : undefined;
    users.set(socket.id, username);
    chat.emit("userOnline", { username, clientId: socket.id });
    // NestJS answers once the handler has returned (section 2).
    setImmediate(() => socket.emit("joined", { username, message: "成功加入聊天室" }));
  });
  guarded(socket, "sendMessage", (data) => {
    const username = users.get(socket.id);
    if (!username) return;
    chat.emit("newMessage", { username, message: data.message, timestamp: new Date().toISOString() });
  });
  guarded(socket, "typing", (data) => {
    const username = users.get(socket.id);
    if (!username) return;
    socket.broadcast.emit("userTyping", { username, isTyping: data.isTyping });
  });
  socket.on("disconnect", () => {
    const username = users.get(socket.id);
    if (!username) return; // section 5: a nameless entry leaks
    users.delete(socket.id);
    chat.emit("userOffline", { username, clientId: socket.id });
  });
});

httpServer.listen(0, "127.0.0.1", () => {
  console.log(httpServer.address().port);
});
