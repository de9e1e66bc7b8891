// The tutorial's browser example (section 6), unchanged except that the URL and
// a valid token come from the environment (CHAT_URL, CHAT_TOKEN) and that
// `sendMessage` and `typing` wait for `joined`, so `joinChat` is handled first.

// 前端代码示例
import { io } from 'socket.io-client';

// 创建WebSocket连接，传递认证token
const socket = io(process.env.CHAT_URL ?? 'http://localhost:3000/chat', {
  query: {
    token: process.env.CHAT_TOKEN ?? 'your-jwt-token'
  }
});

// 监听连接成功事件
socket.on('connect', () => {
  console.log('WebSocket连接成功');
  
  // 发送加入聊天室消息
  socket.emit('joinChat', { username: 'testuser' });
});

// 监听新消息事件
socket.on('newMessage', (data) => {
  console.log('收到新消息:', data);
});

// 监听用户上线事件
socket.on('userOnline', (data) => {
  console.log('用户上线:', data);
});

// 监听用户下线事件
socket.on('userOffline', (data) => {
  console.log('用户下线:', data);
});

// 监听用户输入状态事件
socket.on('userTyping', (data) => {
  console.log('用户输入状态:', data);
});

socket.on('joined', () => {
  // 发送消息
  socket.emit('sendMessage', { message: 'Hello, World!' });

  // 发送输入状态
  socket.emit('typing', { isTyping: true });
});
