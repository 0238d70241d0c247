//! A TCP proxy between two nodes that the test can make misbehave like a bad network: count
//! the bytes each way, read every sync frame that crosses, cut the link after a number of file
//! chunks went down (and refuse connections until told), and damage one byte of a file chunk
//! on its way.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use parley_sync::{Record, decode_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::wstap::{Dir, WsTap};

/// One file chunk that went down, as the proxy forwarded it.
#[derive(Clone, Debug)]
pub struct ChunkSeen {
    /// Connections cut before the one it went on.
    pub epoch: usize,
    pub file: [u8; 32],
    pub index: u32,
    pub len: usize,
}

#[derive(Default)]
struct Shared {
    down: AtomicBool,
    bytes_down: AtomicU64,
    bytes_up: AtomicU64,
    cuts: AtomicUsize,
    /// Cut every connection once this many chunks went down (0: never).
    cut_after_chunks: AtomicUsize,
    /// Damage the last byte of the first occurrence of this, going down.
    damage: Mutex<Option<Vec<u8>>>,
    damaged: AtomicBool,
    chunks: Mutex<Vec<ChunkSeen>>,
    records_down: Mutex<Vec<Record>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if s.down.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(up) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = (client.set_nodelay(true), up.set_nodelay(true));
                let (cr, cw) = client.into_split();
                let (ur, uw) = up.into_split();
                let t1 = tokio::spawn(pipe(cr, uw, Dir::Up, s.clone()));
                let t2 = tokio::spawn(pipe(ur, cw, Dir::Down, s.clone()));
                let mut tasks = s.tasks.lock().unwrap();
                tasks.retain(|t| !t.is_finished());
                tasks.extend([t1, t2]);
            }
        });
        FaultProxy {
            addr,
            shared,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn cut_after_chunks(&self, n: usize) {
        self.shared.cut_after_chunks.store(n, Ordering::SeqCst);
    }

    pub fn damage(&self, needle: Vec<u8>) {
        *self.shared.damage.lock().unwrap() = Some(needle);
    }

    pub fn damaged(&self) -> bool {
        self.shared.damaged.load(Ordering::SeqCst)
    }

    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    pub fn bring_up(&self) {
        self.shared.down.store(false, Ordering::SeqCst);
    }

    pub fn bytes_down(&self) -> u64 {
        self.shared.bytes_down.load(Ordering::SeqCst)
    }

    pub fn bytes_up(&self) -> u64 {
        self.shared.bytes_up.load(Ordering::SeqCst)
    }

    pub fn chunks(&self) -> Vec<ChunkSeen> {
        self.shared.chunks.lock().unwrap().clone()
    }

    /// Every sync record that went down, in order.
    pub fn records_down(&self) -> Vec<Record> {
        self.shared.records_down.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for t in self.shared.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Shared {
    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cuts.fetch_add(1, Ordering::SeqCst);
        self.cut_after_chunks.store(0, Ordering::SeqCst);
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Damages, in `buf`, the last byte of the needle if it ends there (`carry` holds the
    /// bytes before `buf`, so a needle split between two reads is still found).
    fn maybe_damage(&self, carry: &[u8], buf: &mut [u8]) {
        if self.damaged.load(Ordering::SeqCst) {
            return;
        }
        let needle = self.damage.lock().unwrap().clone();
        let Some(needle) = needle else { return };
        let mut joined = carry.to_vec();
        joined.extend_from_slice(buf);
        if let Some(p) = joined.windows(needle.len()).position(|w| w == needle) {
            let last = p + needle.len() - 1 - carry.len();
            buf[last] ^= 0x5a;
            self.damaged.store(true, Ordering::SeqCst);
        }
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    dir: Dir,
    s: Arc<Shared>,
) {
    let epoch = s.cuts.load(Ordering::SeqCst);
    let mut tap = WsTap::new(dir);
    let mut buf = vec![0u8; 16 * 1024];
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if dir == Dir::Down {
            s.maybe_damage(&carry, &mut buf[..n]);
            let keep = n.min(64);
            carry = buf[n - keep..n].to_vec();
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        let counter = match dir {
            Dir::Up => &s.bytes_up,
            Dir::Down => &s.bytes_down,
        };
        counter.fetch_add(n as u64, Ordering::SeqCst);
        if dir != Dir::Down {
            continue;
        }
        for m in tap.push(&buf[..n]) {
            let Ok(frame) = decode_frame(&m) else {
                continue;
            };
            for r in frame.records {
                if let Record::BlobChunk {
                    file, index, bytes, ..
                } = &r
                {
                    s.chunks.lock().unwrap().push(ChunkSeen {
                        epoch,
                        file: *file,
                        index: *index,
                        len: bytes.len(),
                    });
                }
                s.records_down.lock().unwrap().push(r);
            }
        }
        let after = s.cut_after_chunks.load(Ordering::SeqCst);
        if after > 0 && s.chunks.lock().unwrap().len() >= after {
            s.cut();
            return;
        }
    }
    let _ = to.shutdown().await;
}
