//! Stateless challenges: any replica holding the same root keys accepts
//! them, none stores them.
//!
//! `challenge = 0x01 ‖ u64be(issued) ‖ random[16] ‖ HMAC-SHA256(k, first 25 bytes)`
//! with `k = HKDF-SHA256(root_secret, info = "kms-challenge/v1")`.

use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Challenge length in bytes.
pub const LEN: usize = 1 + 8 + 16 + 32;
/// Tolerated clock skew between replicas (seconds).
pub const MAX_SKEW: u64 = 5;

/// Issues and checks challenges.
pub struct Challenges {
    key: Zeroizing<[u8; 32]>,
    ttl: u64,
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Challenges {{ ttl: {} }}", self.ttl)
    }
}

impl Challenges {
    /// Challenges valid for `ttl` seconds, keyed from the root secret.
    pub fn new(root_secret: &[u8; 32], ttl: u64) -> Self {
        let hk = hkdf::Hkdf::<Sha256>::new(None, root_secret);
        let mut key = Zeroizing::new([0u8; 32]);
        let _ = hk.expand(b"kms-challenge/v1", key.as_mut());
        Challenges { key, ttl }
    }

    fn mac(&self, body: &[u8]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key[..])
            .unwrap_or_else(|_| unreachable_hmac());
        m.update(body);
        m
    }

    /// A new challenge issued at `now`, and when it expires.
    pub fn issue(&self, now: u64) -> (Vec<u8>, u64) {
        let mut c = Vec::with_capacity(LEN);
        c.push(1);
        c.extend_from_slice(&now.to_be_bytes());
        let mut random = [0u8; 16];
        OsRng.fill_bytes(&mut random);
        c.extend_from_slice(&random);
        let tag = self.mac(&c).finalize().into_bytes();
        c.extend_from_slice(&tag);
        (c, now.saturating_add(self.ttl))
    }

    /// Checks a challenge at `now`.
    pub fn check(&self, c: &[u8], now: u64) -> Result<(), String> {
        if c.len() != LEN || c[0] != 1 {
            return Err(format!(
                "challenge must be {LEN} bytes of version 1, found {} bytes",
                c.len()
            ));
        }
        self.mac(&c[..25])
            .verify_slice(&c[25..])
            .map_err(|_| "challenge was not issued by this KMS (bad MAC)".to_owned())?;
        let mut t = [0u8; 8];
        t.copy_from_slice(&c[1..9]);
        let issued = u64::from_be_bytes(t);
        if issued > now.saturating_add(MAX_SKEW) {
            return Err(format!("challenge issued in the future ({issued} > {now})"));
        }
        if now.saturating_sub(issued) > self.ttl {
            return Err(format!(
                "challenge expired: issued {issued}, valid {}s, now {now}",
                self.ttl
            ));
        }
        Ok(())
    }
}

#[allow(clippy::panic)]
fn unreachable_hmac() -> ! {
    panic!("HMAC-SHA256 accepts any key length")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_check_expire_and_forge() {
        let c = Challenges::new(&[7; 32], 60);
        let (ch, exp) = c.issue(1000);
        assert_eq!(exp, 1060);
        assert!(c.check(&ch, 1000).is_ok());
        assert!(c.check(&ch, 1060).is_ok());
        assert!(
            c.check(&ch, 1061)
                .unwrap_err()
                .starts_with("challenge expired")
        );
        assert!(c.check(&ch, 994).unwrap_err().contains("future"));
        // Up to MAX_SKEW seconds of clock difference between replicas.
        assert!(c.check(&ch, 1000 - MAX_SKEW).is_ok());
        // The key never shows in Debug.
        assert_eq!(format!("{c:?}"), "Challenges { ttl: 60 }");
        // Another replica with the same root secret accepts it; another KMS does not.
        assert!(Challenges::new(&[7; 32], 60).check(&ch, 1010).is_ok());
        assert!(
            Challenges::new(&[8; 32], 60)
                .check(&ch, 1010)
                .unwrap_err()
                .contains("bad MAC")
        );
        // Tampering with the time is caught by the MAC.
        let mut t = ch.clone();
        t[8] ^= 1;
        assert!(c.check(&t, 1000).unwrap_err().contains("bad MAC"));
        assert!(c.check(&ch[..10], 1000).is_err());
    }
}
