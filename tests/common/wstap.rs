//! Reading what crosses a connection between two nodes: the WebSocket messages of a sync
//! link, taken from the raw bytes a TCP proxy forwards.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dir {
    /// Client (the dialing site) to upstream (the retailer).
    Up,
    /// Upstream to client.
    Down,
}

/// Reads WebSocket messages out of one direction of a connection: the HTTP upgrade first,
/// then frames (masked from the client, unmasked from the server). Other HTTP traffic on the
/// same proxy (pairing) is passed over.
pub struct WsTap {
    dir: Dir,
    /// The HTTP upgrade to WebSocket has been seen on this connection.
    pub upgraded: bool,
    mode: Mode,
    buf: Vec<u8>,
    message: Vec<u8>,
}

enum Mode {
    Head,
    Frames,
    Off,
}

impl WsTap {
    pub fn new(dir: Dir) -> WsTap {
        WsTap {
            dir,
            upgraded: false,
            mode: Mode::Head,
            buf: Vec::new(),
            message: Vec::new(),
        }
    }

    /// Bytes of a message not yet complete.
    pub fn partial(&self) -> usize {
        match self.mode {
            Mode::Frames => self.buf.len() + self.message.len(),
            _ => 0,
        }
    }

    /// Complete binary messages finished by `data`.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if matches!(self.mode, Mode::Off) {
            return out;
        }
        self.buf.extend_from_slice(data);
        if matches!(self.mode, Mode::Head) {
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return out;
            };
            let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
            let upgrade = match self.dir {
                Dir::Down => head.starts_with("http/1.1 101"),
                Dir::Up => head.contains("upgrade: websocket"),
            };
            self.buf.drain(..end + 4);
            if !upgrade {
                self.mode = Mode::Off;
                self.buf.clear();
                return out;
            }
            self.mode = Mode::Frames;
            self.upgraded = true;
        }
        loop {
            let b = &self.buf;
            if b.len() < 2 {
                break;
            }
            let (fin, op, masked) = (b[0] & 0x80 != 0, b[0] & 0x0f, b[1] & 0x80 != 0);
            let (mut pos, mut len) = (2, (b[1] & 0x7f) as usize);
            if len == 126 {
                if b.len() < 4 {
                    break;
                }
                len = u16::from_be_bytes([b[2], b[3]]) as usize;
                pos = 4;
            } else if len == 127 {
                if b.len() < 10 {
                    break;
                }
                len = u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize;
                pos = 10;
            }
            let mask = if masked {
                if b.len() < pos + 4 {
                    break;
                }
                pos += 4;
                Some([b[pos - 4], b[pos - 3], b[pos - 2], b[pos - 1]])
            } else {
                None
            };
            if b.len() < pos + len {
                break;
            }
            let mut payload = b[pos..pos + len].to_vec();
            if let Some(m) = mask {
                for (i, x) in payload.iter_mut().enumerate() {
                    *x ^= m[i % 4];
                }
            }
            self.buf.drain(..pos + len);
            match op {
                0x0 | 0x2 => {
                    self.message.extend_from_slice(&payload);
                    if fin {
                        out.push(std::mem::take(&mut self.message));
                    }
                }
                0x8 => {
                    self.mode = Mode::Off;
                    self.buf.clear();
                    break;
                }
                _ => {} // ping, pong
            }
        }
        out
    }
}

/// The WebSocket messages a recorder kept, with the direction each went.
pub type Messages = std::sync::Arc<std::sync::Mutex<Vec<(Dir, Vec<u8>)>>>;

/// A TCP proxy that forwards everything and keeps a copy: the raw bytes of both directions
/// and every WebSocket message of the sync links through it.
pub struct Recorder {
    pub addr: std::net::SocketAddr,
    pub raw: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    pub messages: Messages,
    accept: tokio::task::JoinHandle<()>,
}

impl Recorder {
    pub async fn start(upstream: std::net::SocketAddr) -> Recorder {
        use std::sync::{Arc, Mutex};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let raw = Arc::new(Mutex::new(Vec::new()));
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (r, m) = (raw.clone(), messages.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(up) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (ur, uw) = up.into_split();
                tokio::spawn(record(cr, uw, Dir::Up, r.clone(), m.clone()));
                tokio::spawn(record(ur, cw, Dir::Down, r.clone(), m.clone()));
            }
        });
        Recorder {
            addr,
            raw,
            messages,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn record(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    dir: Dir,
    raw: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    messages: Messages,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tap = WsTap::new(dir);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        raw.lock().unwrap().extend_from_slice(&buf[..n]);
        for msg in tap.push(&buf[..n]) {
            messages.lock().unwrap().push((dir, msg));
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
