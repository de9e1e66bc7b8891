//! Benchmark peer: the floor of a client's CPU per delivery (`bench/floor.sh`).
//!
//! The least a Socket.IO client can do on the chat workload of
//! `bench/scenarios/chat200.yml`: N users connect to the reference gateway
//! over a websocket (`EIO=4`, token in the query), join `/chat`, send their
//! messages on the same schedule, answer the server's pings, and otherwise
//! read and count frames. No checks, no histograms, no JSON parsing, no
//! timestamps beyond what `--timestamps` asks for. One current-thread tokio
//! runtime, one task per user, a 4 KiB read buffer per socket, reads that
//! stop when a short read shows the socket drained (as tokio's own
//! `TcpStream::poll_read` does).
//!
//! `--timestamps` turns on what chorus does for its kernel receive times:
//! `SO_TIMESTAMPING` (software RX) on every socket and `recvmsg` with a
//! control buffer instead of `recv`, so the difference between the two runs
//! is what kernel timestamps cost per delivery. `--multi-thread` runs the
//! same tasks on tokio's multi-thread scheduler (as `chorus` does) instead.
//!
//! It prints one JSON line: frames and `newMessage` frames received, reads,
//! and the process's own user and system CPU (getrusage).

use std::io;
use std::time::Duration;

use clap::Parser;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};

/// The floor client for `bench/floor.sh`.
#[derive(Parser, Clone)]
struct Args {
    /// The gateway's address (loopback).
    #[arg(long, default_value = "127.0.0.1:3300")]
    addr: std::net::SocketAddr,
    /// Users (one websocket each).
    #[arg(long, default_value_t = 200)]
    users: u32,
    /// Users arrive evenly over this many seconds.
    #[arg(long, default_value_t = 10.0)]
    ramp_s: f64,
    /// Messages each user sends once joined (0: a listener, which joins,
    /// stays `--think-s` and leaves, as in `bench/scenarios/join-storm.yml`).
    #[arg(long, default_value_t = 20)]
    messages: u32,
    /// Milliseconds between one user's messages.
    #[arg(long, default_value_t = 2000)]
    every_ms: u64,
    /// Seconds a user waits after its last message before it disconnects.
    #[arg(long, default_value_t = 5.0)]
    think_s: f64,
    /// HS256 secret of the users' tokens.
    #[arg(long, env = "JWT_SECRET")]
    secret: String,
    /// Kernel receive timestamps (`SO_TIMESTAMPING` + `recvmsg`), as chorus reads.
    #[arg(long)]
    timestamps: bool,
    /// tokio's multi-thread scheduler instead of the current-thread one.
    #[arg(long)]
    multi_thread: bool,
    /// `TCP_QUICKACK` off after every read: the kernel delays its ACKs
    /// instead of sending one from inside each read. Not what a client
    /// does by default (and it stalls a server that uses Nagle); here only
    /// to show what the per-read ACK costs.
    #[arg(long)]
    delayed_acks: bool,
}

#[derive(Serialize)]
struct Claims {
    sub: String,
    username: String,
    exp: u64,
}

/// What one user saw.
#[derive(Default, Clone, Copy)]
struct Counts {
    frames: u64,
    new_message: u64,
    reads: u64,
    bytes: u64,
    failed: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Self) {
        self.frames += o.frames;
        self.new_message += o.new_message;
        self.reads += o.reads;
        self.bytes += o.bytes;
        self.failed += o.failed;
    }
}

/// The largest frame accepted (the `onlineUsers` snapshot of 200 users is ~15 KB).
const MAX_FRAME: usize = 1 << 20;
const READ_BUFFER: usize = 4096;
const SO_TIMESTAMPING: libc::c_int = 37;

fn main() {
    let args = Args::parse();
    let runtime = if args.multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .expect("runtime");
    let started = std::time::Instant::now();
    let total = runtime.block_on(run(args.clone()));
    let (user, sys) = rusage();
    let out = serde_json::json!({
        "users": args.users,
        "timestamps": args.timestamps,
        "multi_thread": args.multi_thread,
        "delayed_acks": args.delayed_acks,
        "frames": total.frames,
        "new_message": total.new_message,
        "reads": total.reads,
        "bytes": total.bytes,
        "failed_users": total.failed,
        "cpu_user_s": user,
        "cpu_system_s": sys,
        "wall_s": started.elapsed().as_secs_f64(),
    });
    println!("{out}");
}

async fn run(args: Args) -> Counts {
    let epoch = Instant::now();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    let key = jsonwebtoken::EncodingKey::from_secret(args.secret.as_bytes());
    let mut tasks = Vec::with_capacity(args.users as usize);
    for i in 0..args.users {
        let name = format!("floor-{i}");
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &Claims {
                sub: name.clone(),
                username: name.clone(),
                exp,
            },
            &key,
        )
        .expect("token");
        let start =
            epoch + Duration::from_secs_f64(args.ramp_s * f64::from(i) / f64::from(args.users));
        let args = args.clone();
        tasks.push(tokio::spawn(async move {
            sleep_until(start).await;
            let mut counts = Counts::default();
            if let Err(e) = user(&args, &name, &token, &mut counts).await {
                eprintln!("{name}: {e}");
                counts.failed = 1;
            }
            counts
        }));
    }
    let mut total = Counts::default();
    for t in tasks {
        total += t.await.unwrap_or(Counts {
            failed: 1,
            ..Counts::default()
        });
    }
    total
}

/// One user: handshake, join, send on schedule, read and count until done.
async fn user(args: &Args, name: &str, token: &str, counts: &mut Counts) -> io::Result<()> {
    let mut tcp = TcpStream::connect(args.addr).await?;
    tcp.set_nodelay(true)?;
    if args.timestamps {
        stamp(&tcp)?;
    }
    let request = format!(
        "GET /socket.io/?EIO=4&transport=websocket&token={token} HTTP/1.1\r\nHost: {}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        args.addr
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(READ_BUFFER);
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 16 * 1024 {
            return Err(io::Error::other("response head too large"));
        }
        let mut chunk = [0u8; 1024];
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if !buf.starts_with(b"HTTP/1.1 101") {
        return Err(io::Error::other("no websocket upgrade"));
    }
    buf.drain(..head_end);

    let mut out = Vec::new();
    let mut mask = 0x9e37_79b9u32 ^ name.len() as u32;
    let mut start = 0;
    let mut sent = 0u32;
    let mut next_send: Option<Instant> = None;
    let mut leave_at: Option<Instant> = None;
    let far = Instant::now() + Duration::from_secs(86_400);
    let think = Duration::from_secs_f64(args.think_s);
    loop {
        // Hand out every complete frame in the buffer.
        while let Some((opcode, from, to)) = frame_at(&buf[start..])? {
            let payload = &buf[start + from..start + to];
            counts.frames += 1;
            match opcode {
                0x1 => match payload {
                    [b'0', ..] => put_text(&mut out, &mut mask, b"40/chat,"),
                    b"2" => put_text(&mut out, &mut mask, b"3"),
                    p if p.starts_with(b"42/chat,[\"newMessage\"") => counts.new_message += 1,
                    p if p.starts_with(b"40/chat,") => {
                        let join = format!("42/chat,[\"joinChat\",{{\"username\":\"{name}\"}}]");
                        put_text(&mut out, &mut mask, join.as_bytes());
                    }
                    p if p.starts_with(b"42/chat,[\"joined\"")
                        && next_send.is_none()
                        && leave_at.is_none() =>
                    {
                        // A listener (`--messages 0`) only stays its think time.
                        match args.messages {
                            0 => leave_at = Some(Instant::now() + think),
                            _ => next_send = Some(Instant::now()),
                        }
                    }
                    _ => {}
                },
                0x8 => return Ok(()),
                0x9 => {
                    let pong = payload.to_vec();
                    put_frame(&mut out, &mut mask, 0xA, &pong);
                }
                _ => {}
            }
            start += to;
        }
        if start == buf.len() {
            buf.clear();
            start = 0;
        }
        if !out.is_empty() {
            tcp.write_all(&out).await?;
            out.clear();
        }
        let wake = match (next_send, leave_at) {
            (_, Some(at)) => at,
            (Some(at), None) => at,
            (None, None) => far,
        };
        tokio::select! {
            biased;
            read = read_some(&tcp, &mut buf, &mut start, args.timestamps) => {
                let n = read?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                counts.reads += 1;
                counts.bytes += n as u64;
                if args.delayed_acks {
                    quickack_off(&tcp)?;
                }
            }
            () = sleep_until(wake) => {
                if leave_at.is_some() {
                    put_frame(&mut out, &mut mask, 0x8, &1000u16.to_be_bytes());
                    tcp.write_all(&out).await?;
                    return Ok(());
                }
                let text = format!("42/chat,[\"sendMessage\",{{\"message\":\"hello {sent}\"}}]");
                put_text(&mut out, &mut mask, text.as_bytes());
                sent += 1;
                if sent == args.messages {
                    next_send = None;
                    leave_at = Some(Instant::now() + think);
                } else {
                    next_send = next_send.map(|t| t + Duration::from_millis(args.every_ms));
                }
            }
        }
    }
}

/// The opcode and payload range of the complete frame at the start of `b`.
fn frame_at(b: &[u8]) -> io::Result<Option<(u8, usize, usize)>> {
    if b.len() < 2 {
        return Ok(None);
    }
    let (len, head) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
        127 if b.len() >= 10 => {
            let len = u64::from_be_bytes(b[2..10].try_into().expect("8 bytes"));
            (usize::try_from(len).unwrap_or(usize::MAX), 10)
        }
        126 | 127 => return Ok(None),
        n => (usize::from(n), 2),
    };
    if len > MAX_FRAME {
        return Err(io::Error::other("frame too large"));
    }
    Ok((b.len() >= head + len).then_some((b[0] & 0x0f, head, head + len)))
}

fn put_text(out: &mut Vec<u8>, mask: &mut u32, payload: &[u8]) {
    put_frame(out, mask, 0x1, payload);
}

/// One masked client frame.
fn put_frame(out: &mut Vec<u8>, mask: &mut u32, opcode: u8, payload: &[u8]) {
    *mask ^= *mask << 13;
    *mask ^= *mask >> 17;
    *mask ^= *mask << 5;
    let key = mask.to_be_bytes();
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
}

/// One read into the free part of `buf` (compacted and grown as needed), by
/// `recv` or, stamped, `recvmsg`. A short read clears the socket's readiness
/// so that the next call waits instead of paying a `recv` that says EAGAIN.
async fn read_some(
    tcp: &TcpStream,
    buf: &mut Vec<u8>,
    start: &mut usize,
    stamped: bool,
) -> io::Result<usize> {
    if *start > 0 {
        buf.drain(..*start);
        *start = 0;
    }
    if buf.capacity() - buf.len() < 512 {
        buf.reserve(READ_BUFFER.max(buf.len()));
    }
    loop {
        tcp.readable().await?;
        let mut got = None;
        let spare = buf.spare_capacity_mut();
        let (ptr, len) = (spare.as_mut_ptr().cast::<u8>(), spare.len());
        let result = tcp.try_io(Interest::READABLE, || {
            let n = recv(tcp, ptr, len, stamped)?;
            got = Some(n);
            if n > 0 && n < len {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        });
        match (got, result) {
            (Some(n), _) => {
                // SAFETY: the kernel wrote these n bytes of the spare capacity.
                unsafe { buf.set_len(buf.len() + n) };
                return Ok(n);
            }
            (None, Err(e)) if e.kind() == io::ErrorKind::WouldBlock => continue,
            (None, Err(e)) => return Err(e),
            // Ok comes only after a read; retried all the same.
            (None, Ok(())) => continue,
        }
    }
}

fn recv(tcp: &TcpStream, ptr: *mut u8, len: usize, stamped: bool) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let fd = tcp.as_raw_fd();
    let n = if stamped {
        let mut iov = libc::iovec {
            iov_base: ptr.cast(),
            iov_len: len,
        };
        let mut control = [0u64; 16];
        // SAFETY: plain data; zero is "no name, no flags".
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: a valid descriptor; msg points at live buffers of the stated lengths.
        let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
        // The stamp is in `control`; reading it costs nothing measurable and
        // the floor does not use it.
        std::hint::black_box(&control);
        n
    } else {
        // SAFETY: a valid descriptor and a writable buffer of `len` bytes.
        unsafe { libc::recv(fd, ptr.cast(), len, 0) }
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Software receive timestamps on `tcp`, as chorus asks for them.
fn stamp(tcp: &TcpStream) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let flags =
        (libc::SOF_TIMESTAMPING_RX_SOFTWARE | libc::SOF_TIMESTAMPING_SOFTWARE) as libc::c_int;
    // SAFETY: a valid socket and a c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_TIMESTAMPING,
            (&flags as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Delayed ACKs until the kernel leaves that mode again (it does on its own).
fn quickack_off(tcp: &TcpStream) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let off: libc::c_int = 0;
    // SAFETY: a valid socket and a c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&off as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// User and system CPU seconds of this process.
fn rusage() -> (f64, f64) {
    // SAFETY: getrusage writes one rusage into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}
