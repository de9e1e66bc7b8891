// The chat gateway of docs/protocol.md section 2 (seed profile: the token is
// checked on each event, never at connect) written for the official socket.io
// 4.8 server, as one node of a cluster: with REDIS_URL set, nodes are joined
// by the official @socket.io/redis-adapter, so broadcasts cross nodes while
// presence (`onlineUsers`) stays in each process's memory, as the tutorial's
// gateway keeps it. Listens on 127.0.0.1 port PORT (default 0) and prints the
// port on its first line of stdout once the adapter is connected.
// JWT_SECRET verifies tokens. With TLS_CERT and TLS_KEY (PEM file paths) it
// serves HTTPS and WSS (Node's own TLS) instead of plaintext.
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createServer as createTlsServer } from "node:https";
import { Server } from "socket.io";
import jwt from "jsonwebtoken";

const secret = process.env.JWT_SECRET ?? "s3cret";
const httpServer =
  process.env.TLS_CERT && process.env.TLS_KEY
    ? createTlsServer({ cert: readFileSync(process.env.TLS_CERT), key: readFileSync(process.env.TLS_KEY) })
    : createServer();
const io = new Server(httpServer);

if (process.env.REDIS_URL) {
  const { createAdapter } = await import("@socket.io/redis-adapter");
  const { createClient } = await import("redis");
  const pub = createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub));
}

// socket id -> username, in the order they joined: this node's users only.
const users = new Map();
const chat = io.of("/chat");

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

httpServer.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  console.log(httpServer.address().port);
});
