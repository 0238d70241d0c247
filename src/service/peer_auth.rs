//! Proving both ends of a sync connection. No secret travels after pairing.
//!
//! Each node has an Ed25519 identity key (made on first use, kept in the database); pairing
//! exchanges the public halves. Opening a connection, step by step:
//!
//! 1. The dialer D sends `POST /api/v1/peers/hello {node_id: D, nonce: cn}` (32 random bytes).
//! 2. The server S, if it knows D, picks a nonce `sn`, remembers `(sn, D, cn)` for
//!    [`CHALLENGE_TTL`], and answers `{node_id: S, nonce: sn, proof}`: its signature over the
//!    transcript `("server", D, S, cn, sn)`.
//! 3. D checks that proof against the key it pinned at pairing, and only then opens the
//!    WebSocket with `X-Parley-Node: D`, `X-Parley-Nonce: sn` and `X-Parley-Proof`: its own
//!    signature over `("client", D, S, cn, sn)`.
//! 4. S takes `sn` out of its table (so it works once), checks D's signature, and upgrades.
//!
//! Whoever answers at a peer's address without S's key learns only D's node id and a random
//! nonce; a replayed upgrade finds its nonce already used. The direction label keeps either
//! proof from being reflected as the other. Peers paired before identity keys keep their
//! shared key and prove it the same way with HMAC-SHA256 over the same transcript.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::*;
use crate::store::peers::{self, Peer};

/// How long a server nonce stays valid: one dial, with room for a slow link.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(30);
/// Open challenges kept per dialer: a flood of hellos naming one peer (node ids are public)
/// displaces only that peer's oldest challenges, never another peer's, and memory stays
/// bounded by the number of peers (a hello from an unknown node keeps nothing).
const CHALLENGES_PER_DIALER: usize = 8;
const CONTEXT: &[u8] = b"parley/peer-auth/v1\0";

/// Which end a proof speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The server's answer to a hello.
    Server,
    /// The dialer's proof, sent with the upgrade.
    Client,
    /// The server's acceptance, on the upgrade response: the dialer checks it before it sends
    /// any sync frame, so a connection that reached someone else carries nothing.
    Accepted,
}

/// The bytes each proof covers: both node ids, both nonces and the direction.
pub fn transcript(
    dir: Direction,
    dialer: Uuid,
    server: Uuid,
    client_nonce: &[u8; 32],
    server_nonce: &[u8; 32],
) -> Vec<u8> {
    let mut t = Vec::with_capacity(CONTEXT.len() + 7 + 32 + 64);
    t.extend_from_slice(CONTEXT);
    t.extend_from_slice(match dir {
        Direction::Server => b"server\0",
        Direction::Client => b"client\0",
        Direction::Accepted => b"accept\0",
    });
    t.extend_from_slice(dialer.as_bytes());
    t.extend_from_slice(server.as_bytes());
    t.extend_from_slice(client_nonce);
    t.extend_from_slice(server_nonce);
    t
}

/// Equal-length byte strings compared without an early exit, so timing does not tell how
/// much of a guess was right. Different lengths are unequal (lengths are not secret here).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HMAC-SHA256 of `msg` under a legacy shared key.
pub fn mac(key: &str, msg: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so this cannot fail.
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    m.update(msg);
    m.finalize().into_bytes().into()
}

/// 32 random bytes: nonces, invite secrets, key seeds.
pub fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    if getrandom::fill(&mut n).is_err() {
        // The OS randomness source failed (it does not on the systems Parley runs on); fall
        // back to the v4 UUID generator rather than to a predictable value.
        n[..16].copy_from_slice(Uuid::new_v4().as_bytes());
        n[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    }
    n
}

pub fn decode32(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}

/// Parses a peer's identity key as it travels (hex).
pub fn parse_public_key(s: &str) -> Option<VerifyingKey> {
    VerifyingKey::from_bytes(&decode32(s)?).ok()
}

/// The server's answer to a hello.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub node_id: Uuid,
    pub nonce: String,
    pub proof: String,
}

struct Pending {
    dialer: Uuid,
    client_nonce: [u8; 32],
    expires: Instant,
}

/// Open challenges by server nonce, and each dialer's in the order they were issued.
#[derive(Default)]
struct Challenges {
    by_nonce: HashMap<[u8; 32], Pending>,
    by_dialer: HashMap<Uuid, std::collections::VecDeque<[u8; 32]>>,
}

impl Challenges {
    fn issue(&mut self, sn: [u8; 32], p: Pending) {
        let q = self.by_dialer.entry(p.dialer).or_default();
        // Expired or used ones first, then the oldest if still full.
        q.retain(|n| {
            self.by_nonce
                .get(n)
                .is_some_and(|x| x.expires > Instant::now())
        });
        while q.len() >= CHALLENGES_PER_DIALER {
            if let Some(old) = q.pop_front() {
                self.by_nonce.remove(&old);
            }
        }
        q.push_back(sn);
        self.by_nonce.insert(sn, p);
    }

    fn take(&mut self, sn: &[u8; 32]) -> Option<Pending> {
        let p = self.by_nonce.remove(sn)?;
        if let Some(q) = self.by_dialer.get_mut(&p.dialer) {
            q.retain(|n| n != sn);
            if q.is_empty() {
                self.by_dialer.remove(&p.dialer);
            }
        }
        Some(p)
    }
}

/// What the service keeps for peer authentication: the node's key and open challenges.
#[derive(Default)]
pub struct PeerAuth {
    key: OnceLock<SigningKey>,
    challenges: Mutex<Challenges>,
}

/// Checks `proof` (hex) by `peer` over `msg`: a signature by its identity key, or for a peer
/// paired before identity keys an HMAC under the shared key.
fn verify(peer: &Peer, msg: &[u8], proof: &str) -> bool {
    let Ok(bytes) = hex::decode(proof) else {
        return false;
    };
    match peer.public_key.as_deref().and_then(parse_public_key) {
        Some(vk) => match <[u8; 64]>::try_from(bytes.as_slice()) {
            Ok(sig) => vk.verify_strict(msg, &Signature::from_bytes(&sig)).is_ok(),
            Err(_) => false,
        },
        None if !peer.key.is_empty() => ct_eq(&mac(&peer.key, msg), &bytes),
        None => false,
    }
}

impl Service {
    /// This node's identity key, made and stored on first use.
    pub(crate) async fn signing_key(&self) -> Result<SigningKey> {
        if let Some(k) = self.peer_auth.key.get() {
            return Ok(k.clone());
        }
        let seed = self
            .store
            .write(|ctx| -> Result<_> { Ok(peers::node_key(ctx.tx())?) })
            .await?;
        Ok(self
            .peer_auth
            .key
            .get_or_init(|| SigningKey::from_bytes(&seed))
            .clone())
    }

    /// This node's identity key's public half (hex), as pairing sends it.
    pub async fn node_public_key(&self) -> Result<String> {
        Ok(hex::encode(
            self.signing_key().await?.verifying_key().as_bytes(),
        ))
    }

    /// Our proof over `msg` for `peer`: a signature, or the legacy HMAC.
    async fn prove(&self, peer: &Peer, msg: &[u8]) -> Result<String> {
        if peer.public_key.is_none() && !peer.key.is_empty() {
            return Ok(hex::encode(mac(&peer.key, msg)));
        }
        Ok(hex::encode(self.signing_key().await?.sign(msg).to_bytes()))
    }

    /// Step 2: a known peer's hello gets a fresh challenge and our proof.
    pub async fn peer_hello(&self, dialer: Uuid, client_nonce: &str) -> Result<Hello> {
        let cn = decode32(client_nonce)
            .ok_or_else(|| DomainError::invalid("nonce", "must be 64 hex digits"))?;
        let peer = self
            .peer(dialer)
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
        let me = self
            .identity()
            .await?
            .ok_or(ServiceError::Store(StoreError::NoIdentity))?
            .node_id;
        let sn = nonce();
        let proof = self
            .prove(&peer, &transcript(Direction::Server, dialer, me, &cn, &sn))
            .await?;
        {
            let mut c = self
                .peer_auth
                .challenges
                .lock()
                .map_err(|_| ServiceError::Unavailable("try again".into()))?;
            let now = Instant::now();
            c.issue(
                sn,
                Pending {
                    dialer,
                    client_nonce: cn,
                    expires: now + CHALLENGE_TTL,
                },
            );
        }
        Ok(Hello {
            node_id: me,
            nonce: hex::encode(sn),
            proof,
        })
    }

    /// Step 4: checks a dialer's proof for a challenge we issued; the challenge is used up
    /// whatever the outcome. Returns the peer and our acceptance proof for the upgrade.
    pub async fn authenticate_peer(
        &self,
        dialer: Uuid,
        server_nonce: &str,
        proof: &str,
    ) -> Result<(Peer, String)> {
        let sn = decode32(server_nonce).ok_or(ServiceError::Unauthenticated)?;
        let pending = self
            .peer_auth
            .challenges
            .lock()
            .ok()
            .and_then(|mut c| c.take(&sn))
            .ok_or(ServiceError::Unauthenticated)?;
        if pending.dialer != dialer || pending.expires < Instant::now() {
            return Err(ServiceError::Unauthenticated);
        }
        let peer = self
            .peer(dialer)
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
        let me = self
            .identity()
            .await?
            .ok_or(ServiceError::Store(StoreError::NoIdentity))?
            .node_id;
        let msg = transcript(Direction::Client, dialer, me, &pending.client_nonce, &sn);
        if !verify(&peer, &msg, proof) {
            return Err(ServiceError::Unauthenticated);
        }
        let accepted = transcript(Direction::Accepted, dialer, me, &pending.client_nonce, &sn);
        let ours = self.prove(&peer, &accepted).await?;
        Ok((peer, ours))
    }

    /// The dialer's last check: the upgrade response's proof is the server's over this
    /// exchange.
    pub fn verify_accepted(
        &self,
        peer: &Peer,
        me: Uuid,
        client_nonce: &[u8; 32],
        server_nonce: &str,
        proof: &str,
    ) -> bool {
        let Some(sn) = decode32(server_nonce) else {
            return false;
        };
        let msg = transcript(Direction::Accepted, me, peer.node_id, client_nonce, &sn);
        verify(peer, &msg, proof)
    }

    /// Step 3, the dialer's side: checks the server's hello against what we pinned for `peer`
    /// and returns our proof, or `None` if the other end is not `peer`.
    pub async fn answer_hello(
        &self,
        peer: &Peer,
        me: Uuid,
        client_nonce: &[u8; 32],
        hello: &Hello,
    ) -> Result<Option<String>> {
        let Some(sn) = decode32(&hello.nonce) else {
            return Ok(None);
        };
        if hello.node_id != peer.node_id {
            return Ok(None);
        }
        let msg = transcript(Direction::Server, me, peer.node_id, client_nonce, &sn);
        if !verify(peer, &msg, &hello.proof) {
            return Ok(None);
        }
        let mine = transcript(Direction::Client, me, peer.node_id, client_nonce, &sn);
        Ok(Some(self.prove(peer, &mine).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hello_flood_naming_one_peer_leaves_the_others_alone() {
        let mut c = Challenges::default();
        let (victim, honest) = (Uuid::new_v4(), Uuid::new_v4());
        let pending = |dialer| Pending {
            dialer,
            client_nonce: nonce(),
            expires: Instant::now() + CHALLENGE_TTL,
        };
        let mine = nonce();
        c.issue(mine, pending(honest));
        for _ in 0..10_000 {
            c.issue(nonce(), pending(victim));
        }
        assert_eq!(
            c.by_nonce.len(),
            1 + CHALLENGES_PER_DIALER,
            "memory stays bounded"
        );
        assert!(
            c.take(&mine).is_some(),
            "the other peer's challenge survived the flood"
        );
        assert!(c.take(&mine).is_none(), "a challenge is used once");
        // The flooded peer's newest challenges still work for it.
        let last = nonce();
        c.issue(last, pending(victim));
        assert!(c.take(&last).is_some());
    }

    #[test]
    fn transcripts_bind_direction_nodes_and_nonces() {
        let (d, s) = (Uuid::new_v4(), Uuid::new_v4());
        let (cn, sn) = (nonce(), nonce());
        let base = transcript(Direction::Server, d, s, &cn, &sn);
        assert_ne!(base, transcript(Direction::Client, d, s, &cn, &sn));
        assert_ne!(base, transcript(Direction::Accepted, d, s, &cn, &sn));
        assert_ne!(base, transcript(Direction::Server, s, d, &cn, &sn));
        assert_ne!(base, transcript(Direction::Server, d, s, &sn, &cn));
        assert_ne!(base, transcript(Direction::Server, d, s, &cn, &nonce()));
        assert_eq!(base, transcript(Direction::Server, d, s, &cn, &sn));
        assert_ne!(cn, sn, "nonces are random");
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"abcd", b"abcd"));
        assert!(!ct_eq(b"abcd", b"abce"));
        assert!(!ct_eq(b"abcd", b"bbcd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn hmac_matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2.
        let tag = mac("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    fn peer(public_key: Option<String>, key: &str) -> Peer {
        Peer {
            node_id: Uuid::new_v4(),
            org_id: crate::domain::OrgId::parse("bolt").unwrap(),
            org_name: "Bolt".into(),
            role: crate::domain::Role::Supplier,
            url: None,
            key: key.into(),
            public_key,
            tls: None,
            created_at: chrono::Utc::now(),
            last_sync_at: None,
            recover_since: None,
        }
    }

    #[test]
    fn proofs_verify_only_for_their_transcript_and_key() {
        let sk = SigningKey::from_bytes(&nonce());
        let p = peer(Some(hex::encode(sk.verifying_key().as_bytes())), "");
        let (d, s, cn, sn) = (Uuid::new_v4(), Uuid::new_v4(), nonce(), nonce());
        let msg = transcript(Direction::Client, d, s, &cn, &sn);
        let proof = hex::encode(sk.sign(&msg).to_bytes());
        assert!(verify(&p, &msg, &proof));
        let reflected = transcript(Direction::Server, d, s, &cn, &sn);
        assert!(
            !verify(&p, &reflected, &proof),
            "a client proof is no server proof"
        );
        let other = SigningKey::from_bytes(&nonce());
        assert!(!verify(&p, &msg, &hex::encode(other.sign(&msg).to_bytes())));
        assert!(!verify(&p, &msg, "zz"));
        assert!(
            !verify(&peer(None, ""), &msg, &proof),
            "no credential, no entry"
        );

        let legacy = peer(None, "pk_0123456789abcdef0123456789abcdef");
        let tag = hex::encode(mac(&legacy.key, &msg));
        assert!(verify(&legacy, &msg, &tag));
        assert!(!verify(&legacy, &reflected, &tag));
        assert!(!verify(&legacy, &msg, &hex::encode(mac("pk_other", &msg))));
    }
}
