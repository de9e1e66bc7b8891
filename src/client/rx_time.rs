//! Kernel receive timestamps on the client's TCP sockets.
//!
//! Every client socket asks the kernel for software receive timestamps
//! (`SO_TIMESTAMPING` with `SOF_TIMESTAMPING_RX_SOFTWARE |
//! SOF_TIMESTAMPING_SOFTWARE`) and reads with `recvmsg`, so that each read
//! also brings, as an `SCM_TIMESTAMPING` control message, the time the
//! kernel received the last segment of the bytes it returned. [`RxTcp`]
//! keeps the latest of those in a cell shared with whatever parses frames
//! above it (websocket, HTTP, rustls in between), which asks its
//! [`RxClock`] when the read that completed a frame was received: a frame
//! read over several reads is dated by the last one, the one that brought
//! its last byte. A read that returns several frames dates them all by the
//! latest segment, a slightly late bound for the earlier ones.
//!
//! Where the kernel gives nothing (not Linux, the option refused, a read
//! without the control message) the time is the user-space read time, and
//! [`RxTime::source`] says why.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Where the receive time of a frame comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RxSource {
    /// The kernel's software receive timestamp of the read.
    Kernel = 0,
    /// User-space time: this OS has no `SO_TIMESTAMPING` (or the socket
    /// was opened without asking for it).
    Unsupported = 1,
    /// User-space time: the kernel refused `SO_TIMESTAMPING`.
    Refused = 2,
    /// User-space time: the read came without an `SCM_TIMESTAMPING`
    /// control message.
    NoControlMessage = 3,
}

impl RxSource {
    /// Every source, in the order of [`RxSource::index`].
    pub const ALL: [RxSource; 4] = [
        RxSource::Kernel,
        RxSource::Unsupported,
        RxSource::Refused,
        RxSource::NoControlMessage,
    ];

    /// A dense index, for per-source tables: the kernel first, then the
    /// user-time reasons.
    pub fn index(self) -> usize {
        self as usize
    }

    fn from_u8(v: u8) -> Self {
        Self::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(RxSource::Unsupported)
    }
}

/// When a frame was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxTime {
    /// When the kernel received the read that completed the frame, or the
    /// user-space read time when [`RxTime::source`] is not the kernel.
    pub at: Instant,
    /// When that read returned to chorus (user-space time).
    pub read_at: Instant,
    /// Where `at` comes from.
    pub source: RxSource,
}

impl RxTime {
    /// A user-space time: received when read.
    pub fn user(read_at: Instant, source: RxSource) -> Self {
        Self {
            at: read_at,
            read_at,
            source,
        }
    }

    /// How long the bytes waited in the kernel before chorus read them
    /// (zero for a user-space time).
    pub fn read_delay(&self) -> Duration {
        self.read_at.saturating_duration_since(self.at)
    }
}

/// The instant kernel times are stored relative to (one word, no lock).
/// The first call also keeps the kernel's receive stamping on for the life
/// of the process (see [`hold_stamping_on`]).
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(|| {
        hold_stamping_on();
        Instant::now() - Duration::from_secs(1)
    })
}

/// Linux stamps received packets only while some socket asks for it, and
/// turns that on (and off, after the last such socket closes) in deferred
/// work: reads in between come without the control message. One socket of
/// the process's own, never closed, keeps it on between connections, so
/// only the very first reads can miss it.
#[cfg(target_os = "linux")]
fn hold_stamping_on() {
    // SAFETY: plain socket calls on a descriptor we own; a failure leaves
    // nothing behind but a closed descriptor.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return;
        }
        let flags =
            (libc::SOF_TIMESTAMPING_RX_SOFTWARE | libc::SOF_TIMESTAMPING_SOFTWARE) as libc::c_int;
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            sys::SO_TIMESTAMPING,
            (&flags as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        if rc != 0 {
            libc::close(fd);
        }
        // Otherwise kept open on purpose: one descriptor per process.
    }
}

#[cfg(not(target_os = "linux"))]
fn hold_stamping_on() {}

/// The latest receive time of one socket, shared by the reader that stores
/// it and the frame parser that reads it (both in the same task).
#[derive(Debug)]
struct Stamp {
    /// Nanoseconds after [`base`] of the latest kernel time.
    kernel_ns: AtomicU64,
    /// The [`RxSource`] of the latest read.
    source: AtomicU8,
}

impl Stamp {
    fn new(source: RxSource) -> Arc<Self> {
        Arc::new(Self {
            kernel_ns: AtomicU64::new(0),
            source: AtomicU8::new(source as u8),
        })
    }

    fn set(&self, kernel: Option<Instant>) {
        match kernel {
            Some(at) => {
                let ns = at.saturating_duration_since(base()).as_nanos();
                self.kernel_ns
                    .store(u64::try_from(ns).unwrap_or(u64::MAX), Relaxed);
                self.source.store(RxSource::Kernel as u8, Relaxed);
            }
            None => self.source.store(RxSource::NoControlMessage as u8, Relaxed),
        }
    }
}

/// Tells when the latest read of a socket was received.
#[derive(Debug, Clone)]
pub(crate) struct RxClock(Arc<Stamp>);

impl RxClock {
    /// The receive time of the latest read, which returned at `read_at`.
    #[inline]
    pub fn time(&self, read_at: Instant) -> RxTime {
        match RxSource::from_u8(self.0.source.load(Relaxed)) {
            RxSource::Kernel => {
                let at = base() + Duration::from_nanos(self.0.kernel_ns.load(Relaxed));
                // The kernel time came before the read by construction;
                // clamped all the same against a wall-clock step.
                RxTime {
                    at: at.min(read_at),
                    read_at,
                    source: RxSource::Kernel,
                }
            }
            source => RxTime::user(read_at, source),
        }
    }
}

/// A client TCP socket that reads with `recvmsg` and keeps the kernel
/// receive time of its latest read.
#[derive(Debug)]
pub(crate) struct RxTcp {
    tcp: TcpStream,
    stamp: Arc<Stamp>,
    stamped: bool,
}

impl RxTcp {
    /// Asks the kernel for receive timestamps on `tcp`; a refusal is kept
    /// as the reason the times will be user-space ones.
    pub fn new(tcp: TcpStream) -> Self {
        let source = enable(&tcp);
        Self::with_source(tcp, source)
    }

    /// `tcp` without kernel timestamps: times are user-space ones.
    pub fn without_timestamps(tcp: TcpStream) -> Self {
        Self::with_source(tcp, RxSource::Unsupported)
    }

    fn with_source(tcp: TcpStream, source: RxSource) -> Self {
        base();
        Self {
            tcp,
            stamp: Stamp::new(source),
            stamped: source == RxSource::Kernel,
        }
    }

    /// The clock of this socket's reads.
    pub fn clock(&self) -> RxClock {
        RxClock(self.stamp.clone())
    }

    /// The reading and writing halves (no lock between them).
    pub fn into_split(self) -> (RxReadHalf, OwnedWriteHalf) {
        let (read, write) = self.tcp.into_split();
        let read = RxReadHalf {
            half: read,
            stamp: self.stamp,
            stamped: self.stamped,
        };
        (read, write)
    }
}

/// The reading half of an [`RxTcp`].
#[derive(Debug)]
pub(crate) struct RxReadHalf {
    half: OwnedReadHalf,
    stamp: Arc<Stamp>,
    stamped: bool,
}

impl AsyncRead for RxTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.stamped {
            return Pin::new(&mut this.tcp).poll_read(cx, buf);
        }
        poll_recv(&this.tcp, &this.stamp, cx, buf)
    }
}

impl AsyncRead for RxReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.stamped {
            return Pin::new(&mut this.half).poll_read(cx, buf);
        }
        poll_recv(this.half.as_ref(), &this.stamp, cx, buf)
    }
}

impl AsyncWrite for RxTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Waits for readability, then one `recvmsg` into `buf`, storing its time.
///
/// A read shorter than `buf` drained the socket (the reactor's epoll is
/// edge-triggered), so the readiness is cleared with it, as tokio's own
/// `TcpStream::poll_read` does: the next read waits for the next segment
/// instead of paying a `recvmsg` that only says EAGAIN (at ordinary rates
/// every frame is a read of its own, so that was a second syscall per frame).
/// tokio clears only if no new readiness came since the one this read was
/// made under, so bytes that arrive in between still wake the reader.
fn poll_recv(
    tcp: &TcpStream,
    stamp: &Stamp,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    loop {
        ready!(tcp.poll_read_ready(cx))?;
        // SAFETY: recvmsg only writes into the unfilled part, and only the
        // `n` bytes it reports are then marked initialised.
        let unfilled = unsafe { buf.unfilled_mut() };
        let (ptr, len) = (unfilled.as_mut_ptr().cast::<u8>(), unfilled.len());
        let mut got = None;
        let result = tcp.try_io(tokio::io::Interest::READABLE, || {
            let read = recv_stamped(tcp, ptr, len)?;
            let drained = read.0 > 0 && read.0 < len;
            got = Some(read);
            // try_io clears the readiness on WouldBlock; the bytes are in `got`.
            match drained {
                true => Err(io::ErrorKind::WouldBlock.into()),
                false => Ok(()),
            }
        });
        let Some((n, kernel)) = got else {
            match result {
                // try_io cleared the readiness: wait again.
                Ok(()) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        };
        if n > 0 {
            stamp.set(kernel);
        }
        // SAFETY: the kernel wrote these n bytes.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        return Poll::Ready(Ok(()));
    }
}

/// Turns timestamping on; what the socket's times will be.
#[cfg(target_os = "linux")]
fn enable(tcp: &TcpStream) -> RxSource {
    use std::os::fd::AsRawFd;
    let flags =
        (libc::SOF_TIMESTAMPING_RX_SOFTWARE | libc::SOF_TIMESTAMPING_SOFTWARE) as libc::c_int;
    // SAFETY: a valid socket descriptor, and a pointer to a c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            sys::SO_TIMESTAMPING,
            (&flags as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        RxSource::Kernel
    } else {
        RxSource::Refused
    }
}

#[cfg(not(target_os = "linux"))]
fn enable(_tcp: &TcpStream) -> RxSource {
    RxSource::Unsupported
}

/// One `recvmsg`: the bytes read and the kernel time of the read, if the
/// control message came.
#[cfg(target_os = "linux")]
fn recv_stamped(
    tcp: &TcpStream,
    into: *mut u8,
    len: usize,
) -> io::Result<(usize, Option<Instant>)> {
    use std::os::fd::AsRawFd;
    let mut iov = libc::iovec {
        iov_base: into.cast(),
        iov_len: len,
    };
    // Room for one scm_timestamping (3 timespecs) and then some; u64s for alignment.
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; zero is a valid "no name, no flags" value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: the descriptor is valid; msg points at live buffers of the lengths it states.
    let n = unsafe { libc::recvmsg(tcp.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let kernel = sys::timestamp(&msg).and_then(sys::to_instant);
    Ok((n as usize, kernel))
}

/// Never called: elsewhere no socket is stamped, and reads go to tokio.
#[cfg(not(target_os = "linux"))]
fn recv_stamped(_: &TcpStream, _: *mut u8, _: usize) -> io::Result<(usize, Option<Instant>)> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(target_os = "linux")]
mod sys {
    use std::time::{Duration, Instant};

    /// `SO_TIMESTAMPING` (as `SCM_TIMESTAMPING` too): 37 wherever `time_t`
    /// is 64 bits, where the "old" timespec layout is already 64-bit.
    pub const SO_TIMESTAMPING: libc::c_int = 37;

    /// `ts[0]` (the software timestamp) of the `SCM_TIMESTAMPING` control
    /// message of a received `msg`, as (seconds, nanoseconds) of
    /// `CLOCK_REALTIME`; `None` when there is none or it is zero.
    pub fn timestamp(msg: &libc::msghdr) -> Option<(i128, i128)> {
        let want = std::mem::size_of::<[libc::timespec; 3]>();
        // SAFETY: msg's control pointer and length describe one buffer, as
        // filled by the kernel (or by a test); the CMSG_* walk stays inside it.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(msg);
            while !cmsg.is_null() {
                let header = &*cmsg;
                let data_len =
                    (header.cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                if header.cmsg_level == libc::SOL_SOCKET
                    && header.cmsg_type == SO_TIMESTAMPING
                    && data_len >= want
                {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    return (ts.tv_sec != 0 || ts.tv_nsec != 0)
                        .then_some((i128::from(ts.tv_sec), i128::from(ts.tv_nsec)));
                }
                cmsg = libc::CMSG_NXTHDR(msg, cmsg);
            }
        }
        None
    }

    /// A `CLOCK_REALTIME` time as an [`Instant`]: now, less how long ago
    /// it was by the real-time clock (read twice per read, no syscall: vDSO).
    pub fn to_instant((sec, nsec): (i128, i128)) -> Option<Instant> {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a pointer to a live timespec.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) } != 0 {
            return None;
        }
        let mono = Instant::now();
        let ago_ns =
            (i128::from(now.tv_sec) - sec) * 1_000_000_000 + (i128::from(now.tv_nsec) - nsec);
        // A time "in the future" is a clock step: dated now.
        let ago = Duration::from_nanos(u64::try_from(ago_ns).unwrap_or(0));
        mono.checked_sub(ago)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A msghdr over `control`, as recvmsg would leave it.
    fn msg_over(control: &mut [u64]) -> libc::msghdr {
        // SAFETY: plain data.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(control) as _;
        msg
    }

    /// Writes one control message of `level`/`kind` with `data` at the start of `control`.
    fn put_cmsg(control: &mut [u64], level: i32, kind: i32, data: &[u8]) -> libc::msghdr {
        let mut msg = msg_over(control);
        // SAFETY: control is large enough for the header and data (checked by CMSG_FIRSTHDR).
        unsafe {
            msg.msg_controllen = libc::CMSG_SPACE(data.len() as u32) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            assert!(!cmsg.is_null());
            (*cmsg).cmsg_level = level;
            (*cmsg).cmsg_type = kind;
            (*cmsg).cmsg_len = libc::CMSG_LEN(data.len() as u32) as _;
            std::ptr::copy_nonoverlapping(data.as_ptr(), libc::CMSG_DATA(cmsg), data.len());
        }
        msg
    }

    fn timespecs(ts: [(i64, i64); 3]) -> Vec<u8> {
        ts.iter()
            .flat_map(|&(s, n)| {
                let t = libc::timespec {
                    tv_sec: s as _,
                    tv_nsec: n as _,
                };
                // SAFETY: a timespec is plain data of this size.
                unsafe {
                    std::slice::from_raw_parts(
                        (&t as *const libc::timespec).cast::<u8>(),
                        std::mem::size_of::<libc::timespec>(),
                    )
                }
                .to_vec()
            })
            .collect()
    }

    #[test]
    fn reads_the_software_timestamp_of_scm_timestamping() {
        let mut control = [0u64; 16];
        let data = timespecs([(1_700_000_000, 123_456_789), (0, 0), (5, 5)]);
        let msg = put_cmsg(&mut control, libc::SOL_SOCKET, sys::SO_TIMESTAMPING, &data);
        assert_eq!(sys::timestamp(&msg), Some((1_700_000_000, 123_456_789)));

        // Another control message, a zero ts[0], a short one, none at all: no time.
        let msg = put_cmsg(&mut control, libc::SOL_SOCKET, libc::SCM_RIGHTS, &data);
        assert_eq!(sys::timestamp(&msg), None);
        let zero = timespecs([(0, 0), (0, 0), (0, 0)]);
        let msg = put_cmsg(&mut control, libc::SOL_SOCKET, sys::SO_TIMESTAMPING, &zero);
        assert_eq!(sys::timestamp(&msg), None);
        let msg = put_cmsg(
            &mut control,
            libc::SOL_SOCKET,
            sys::SO_TIMESTAMPING,
            &data[..16],
        );
        assert_eq!(sys::timestamp(&msg), None);
        let mut empty = [0u64; 16];
        let mut msg = msg_over(&mut empty);
        msg.msg_controllen = 0;
        assert_eq!(sys::timestamp(&msg), None);
    }

    #[test]
    fn a_realtime_stamp_becomes_an_instant_that_long_ago() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let ago = now - Duration::from_millis(250);
        let at =
            sys::to_instant((i128::from(ago.as_secs()), i128::from(ago.subsec_nanos()))).unwrap();
        let elapsed = at.elapsed();
        assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
        // A stamp ahead of the clock is dated now, never after it.
        let ahead = now + Duration::from_secs(60);
        let at = sys::to_instant((i128::from(ahead.as_secs()), 0)).unwrap();
        assert!(at <= Instant::now());
    }

    async fn pair(stamped: bool) -> (RxTcp, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let client = client.unwrap();
        let client = match stamped {
            true => RxTcp::new(client),
            false => RxTcp::without_timestamps(client),
        };
        (client, server.unwrap().0)
    }

    #[tokio::test]
    async fn a_read_is_dated_by_the_kernel_before_it_returns() {
        let (client, mut server) = pair(true).await;
        let clock = client.clock();
        let (mut read, _write) = client.into_split();
        // The kernel turns stamping on in deferred work after the process's
        // first request: a few round trips (bounded) until it is on.
        let mut buf = [0u8; 16];
        for _ in 0..100 {
            server.write_all(b".").await.unwrap();
            assert_eq!(read.read(&mut buf).await.unwrap(), 1);
            if clock.time(Instant::now()).source == RxSource::Kernel {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let before = Instant::now();
        server.write_all(b"hello").await.unwrap();
        // Let the bytes wait in the socket: the kernel time must be the earlier one.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let n = read.read(&mut buf).await.unwrap();
        let read_at = Instant::now();
        assert_eq!(&buf[..n], b"hello");
        let rx = clock.time(read_at);
        assert_eq!(rx.source, RxSource::Kernel);
        assert!(
            rx.at >= before - Duration::from_millis(5),
            "{:?}",
            before - rx.at
        );
        assert!(
            rx.read_delay() >= Duration::from_millis(20),
            "{:?}",
            rx.read_delay()
        );
    }

    #[tokio::test]
    async fn reads_after_a_short_or_a_full_read_neither_hang_nor_lose_bytes() {
        let (client, mut server) = pair(true).await;
        let (mut read, _write) = client.into_split();
        let bounded = Duration::from_secs(5);
        // A full read (the buffer filled) leaves the rest readable at once,
        // with no new segment to wake the reader.
        server.write_all(&[7u8; 100]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut got = 0;
        let mut small = [0u8; 16];
        while got < 100 {
            let n = tokio::time::timeout(bounded, read.read(&mut small))
                .await
                .expect("the rest of a full read is read without a new segment")
                .unwrap();
            assert!(n > 0 && small[..n].iter().all(|&b| b == 7));
            got += n;
        }
        assert_eq!(got, 100);
        // A short read drains the socket; bytes that come later still wake it.
        let mut buf = [0u8; 64];
        for round in 0..50u8 {
            server.write_all(&[round; 3]).await.unwrap();
            let n = tokio::time::timeout(bounded, read.read(&mut buf))
                .await
                .expect("a later segment wakes the reader after a short read")
                .unwrap();
            assert_eq!(&buf[..n], &[round; 3]);
        }
    }

    #[tokio::test]
    async fn a_socket_without_timestamping_reports_user_time() {
        let (mut client, mut server) = pair(false).await;
        let clock = client.clock();
        server.write_all(b"x").await.unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(client.read(&mut buf).await.unwrap(), 1);
        let read_at = Instant::now();
        let rx = clock.time(read_at);
        assert_eq!(rx, RxTime::user(read_at, RxSource::Unsupported));
        assert_eq!(rx.read_delay(), Duration::ZERO);
        // And writes go through.
        client.write_all(b"ok").await.unwrap();
        let mut got = [0u8; 2];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ok");
    }
}
