// A socket.io 4.8 server for the client engine's interop tests. Listens on
// 127.0.0.1 port 0 and prints the port on its first line of stdout.
// PING_INTERVAL / PING_TIMEOUT (ms) override the heartbeat.
import { createServer } from "node:http";
import { Server } from "socket.io";

const httpServer = createServer();
const io = new Server(httpServer, {
  pingInterval: Number(process.env.PING_INTERVAL ?? 25000),
  pingTimeout: Number(process.env.PING_TIMEOUT ?? 20000),
  maxHttpBufferSize: 4e6,
});

const chat = io.of("/chat");
chat.use((socket, next) => {
  if (socket.handshake.auth?.token === "bad") {
    const err = new Error("refused");
    err.data = { code: "BAD_TOKEN" };
    next(err);
  } else {
    next();
  }
});

chat.on("connection", (socket) => {
  socket.emit("welcome", {
    sid: socket.id,
    auth: socket.handshake.auth,
    query: socket.handshake.query.who ?? null,
    header: socket.handshake.headers["x-test"] ?? null,
  });
  // Acked: answers with the arguments; otherwise emits them back.
  socket.on("echo", (...args) => {
    const ack = typeof args.at(-1) === "function" ? args.pop() : null;
    if (ack) ack(...args);
    else socket.emit("echo", ...args);
  });
  // A server-side ack: the client's answer comes back as "answered".
  socket.on("askMe", (payload) => {
    socket.emit("question", payload, (...answer) => socket.emit("answered", answer));
  });
  socket.on("binary", () => socket.emit("blob", { name: "b", data: Buffer.from([1, 2, 3]) }, Buffer.from([9])));
  socket.on("big", (n) => socket.emit("bigData", "x".repeat(n)));
  socket.on("transport", (ack) => ack(socket.conn.transport.name));
  socket.on("kickMe", () => socket.disconnect());
  socket.on("closeMe", () => socket.conn.close());
});

httpServer.listen(0, "127.0.0.1", () => {
  console.log(httpServer.address().port);
});
