//! Moves frames between a WebSocket and a [`Transport`], and keeps the link honest: a ping
//! every `PING` and the link is dropped when nothing at all arrives for `DEAD_AFTER`, so a
//! peer that vanished without closing is noticed within 15 s.

use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::conn::Transport;

pub const PING: Duration = Duration::from_secs(5);
pub const DEAD_AFTER: Duration = Duration::from_secs(15);

/// What the pump needs to know of a WebSocket library's message type.
pub enum Kind {
    Binary(Vec<u8>),
    Close,
    /// Ping, pong, text: proof of life, nothing to deliver.
    Other,
}

/// How to build and read one library's messages.
pub struct Codec<M> {
    pub kind: fn(M) -> Kind,
    pub binary: fn(Vec<u8>) -> M,
    pub ping: fn() -> M,
}

/// Spawns the pump; the returned transport carries binary frames both ways.
pub fn spawn<S, M, E>(ws: S, codec: Codec<M>, blobs: bool) -> Transport
where
    S: Stream<Item = Result<M, E>> + Sink<M> + Send + Unpin + 'static,
    <S as Sink<M>>::Error: Send,
    M: Send + 'static,
    E: Send + 'static,
{
    // Outgoing frames are at most 32 KB (`parley_sync::Config::frame_target_bytes`) unless one
    // record is larger: 256 of them hold a step's largest answers while the peer is busy, so a
    // step rarely waits on the pump (which, while the session is busy, may itself be waiting
    // to hand the session a frame: both directions are bounded, 8 MB and 64 frames).
    let (to_peer, mut outgoing) = mpsc::channel::<Vec<u8>>(256);
    let (incoming, from_peer) = mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        let mut ticker = tokio::time::interval(PING);
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(Ok(m)) => {
                        last_heard = Instant::now();
                        match (codec.kind)(m) {
                            Kind::Binary(b) => if incoming.send(b).await.is_err() { break },
                            Kind::Close => break,
                            Kind::Other => {}
                        }
                    }
                    _ => break,
                },
                out = outgoing.recv() => match out {
                    Some(b) => if sink.send((codec.binary)(b)).await.is_err() { break },
                    None => break,
                },
                _ = ticker.tick() => {
                    if last_heard.elapsed() > DEAD_AFTER {
                        tracing::info!("peer silent for {} s; dropping the connection", DEAD_AFTER.as_secs());
                        break;
                    }
                    if sink.send((codec.ping)()).await.is_err() { break }
                }
            }
        }
        let _ = sink.close().await;
    });
    Transport {
        tx: to_peer,
        rx: from_peer,
        blobs,
    }
}
