// Benchmark peer: the tutorial's chat gateway logic on plain socket.io 4
// (no NestJS), for bench/gateway.sh. /chat namespace; the JWT comes from the
// `token` query (or auth) and is verified on every event, as the tutorial's
// WsJwtGuard does; `onlineUsers` on connect, `userOnline` + `joined` on
// joinChat, `newMessage` to everyone on sendMessage, `userTyping` to the
// others, `userOffline` on disconnect. PORT (3300) and JWT_SECRET from the
// environment.
import { createServer } from "node:http";
import { Server } from "socket.io";
import jwt from "jsonwebtoken";

const secret = process.env.JWT_SECRET ?? "secret";
const httpServer = createServer();
const io = new Server(httpServer, { pingInterval: 300000, pingTimeout: 300000 });
const chat = io.of("/chat");
const users = new Map();

function verified(socket) {
  const token = socket.handshake.auth?.token ?? socket.handshake.query?.token;
  try {
    return jwt.verify(token, secret);
  } catch {
    socket.emit("exception", { status: "error", message: "无效的认证令牌" });
    return null;
  }
}

chat.on("connection", (socket) => {
  socket.emit("onlineUsers", Array.from(users.entries()));
  socket.on("joinChat", (data) => {
    if (!verified(socket)) return;
    users.set(socket.id, data.username);
    chat.emit("userOnline", { username: data.username, clientId: socket.id });
    socket.emit("joined", { username: data.username, message: "成功加入聊天室" });
  });
  socket.on("sendMessage", (data) => {
    if (!verified(socket)) return;
    const username = users.get(socket.id);
    if (!username) return;
    chat.emit("newMessage", { username, message: data.message, timestamp: new Date().toISOString() });
  });
  socket.on("typing", (data) => {
    if (!verified(socket)) return;
    const username = users.get(socket.id);
    if (!username) return;
    socket.broadcast.emit("userTyping", { username, isTyping: data.isTyping });
  });
  socket.on("disconnect", () => {
    const username = users.get(socket.id);
    if (username !== undefined) {
      users.delete(socket.id);
      chat.emit("userOffline", { username, clientId: socket.id });
    }
  });
});

httpServer.listen(Number(process.env.PORT ?? 3300), "127.0.0.1", () => {
  console.log(`node socket.io peer on ${httpServer.address().port}`);
});
