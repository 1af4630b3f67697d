//! SHA-256 and HMAC-SHA256 over a caller's buffer: the bytes waiting in it are the hash's
//! pending block, so nothing is copied into a second one, and finishing pads in place.
//! Pure Rust (no Python), tested against `sha2` and `hmac` directly.

use hmac::{Hmac, Mac};
use sha2::digest::consts::U64;
use sha2::digest::generic_array::GenericArray;
use sha2::Sha256;

const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Plain SHA-256 on `sha2`'s block function. Its `Digest` wrapper keeps its own block buffer
/// and finalises by value: the moves stall on store forwarding, a tenth of a small call.
pub(crate) struct Sha256Blocks {
    state: [u32; 8],
    /// Bytes compressed so far.
    total: u64,
}

impl Sha256Blocks {
    /// Compresses the whole 64-byte blocks at the front of `data`; returns their length.
    #[inline]
    fn compress(&mut self, data: &[u8]) -> usize {
        let n = data.len() & !63;
        // SAFETY: `n / 64` blocks of 64 bytes; GenericArray<u8, U64> is a [u8; 64]
        // (size 64, alignment 1).
        let blocks: &[GenericArray<u8, U64>] =
            unsafe { std::slice::from_raw_parts(data.as_ptr().cast(), n / 64) };
        sha2::compress256(&mut self.state, blocks);
        self.total += n as u64;
        n
    }
}

pub(crate) enum Hasher {
    Plain(Sha256Blocks),
    Keyed(Box<Hmac<Sha256>>),
}

/// HMAC-SHA256 keyed by `key` of any length, built so that it cannot fail: RFC 2104 hashes
/// a key longer than the block and pads a shorter one with zeros, as done here, and a key
/// of exactly one block is taken as it is (`new_from_slice` returns a Result to unwrap).
fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    use sha2::Digest;
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    <Hmac<Sha256> as hmac::digest::KeyInit>::new(&block.into())
}

impl Hasher {
    pub(crate) fn new(secret: Option<&[u8]>) -> Self {
        match secret {
            None => Hasher::Plain(Sha256Blocks {
                state: IV,
                total: 0,
            }),
            Some(key) => Hasher::Keyed(Box::new(hmac_sha256(key))),
        }
    }

    /// Hashes `buf`, then `bytes`, leaving in `buf` what is not hashed yet: fewer than 64
    /// bytes (plain SHA-256 compresses whole blocks only), or nothing (HMAC).
    pub(crate) fn absorb(&mut self, buf: &mut Vec<u8>, mut bytes: &[u8]) {
        match self {
            Hasher::Keyed(mac) => {
                mac.update(buf);
                mac.update(bytes);
                buf.clear();
            }
            Hasher::Plain(sha) => {
                if !buf.len().is_multiple_of(64) && !bytes.is_empty() {
                    let take = (64 - buf.len() % 64).min(bytes.len());
                    buf.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                }
                let n = sha.compress(buf);
                buf.copy_within(n.., 0);
                buf.truncate(buf.len() - n);
                if !bytes.is_empty() {
                    // `buf` was topped up to whole blocks, so it is empty now.
                    let m = sha.compress(bytes);
                    buf.extend_from_slice(&bytes[m..]);
                }
            }
        }
    }

    /// The digest of everything absorbed and of `buf`, which is cleared; the hasher starts
    /// over (unkeyed).
    pub(crate) fn finish(&mut self, buf: &mut Vec<u8>) -> [u8; 32] {
        let sha = match self {
            Hasher::Plain(sha) => sha,
            Hasher::Keyed(_) => {
                let Hasher::Keyed(mac) = std::mem::replace(self, Hasher::new(None)) else {
                    return [0; 32]; // not reached: `self` was Keyed (no panic path here)
                };
                let mut mac = *mac;
                mac.update(buf);
                buf.clear();
                return mac.finalize().into_bytes().into();
            }
        };
        // FIPS 180-4 padding, in place: 0x80, zeros up to 56 mod 64, the bit length.
        let bits = (sha.total + buf.len() as u64) * 8;
        buf.push(0x80);
        let padded = buf.len() + (120 - buf.len() % 64) % 64;
        buf.resize(padded, 0);
        buf.extend_from_slice(&bits.to_be_bytes());
        sha.compress(buf);
        buf.clear();
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(sha.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        *sha = Sha256Blocks {
            state: IV,
            total: 0,
        };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Hasher;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};

    /// Feeds `data` as the sink does: some bytes written into the buffer, some absorbed
    /// directly, in pieces cut by `cuts`.
    fn run(secret: Option<&[u8]>, data: &[u8], cuts: &[usize]) -> [u8; 32] {
        let mut hasher = Hasher::new(secret);
        let mut buf = Vec::new();
        let mut at = 0;
        for (i, &cut) in cuts.iter().enumerate() {
            let end = (at + cut).min(data.len());
            if i % 3 == 2 {
                hasher.absorb(&mut buf, &data[at..end]);
            } else {
                buf.extend_from_slice(&data[at..end]);
                if i % 3 == 1 {
                    hasher.absorb(&mut buf, &[]);
                }
            }
            at = end;
        }
        buf.extend_from_slice(&data[at..]);
        hasher.finish(&mut buf)
    }

    #[test]
    fn matches_sha2_and_hmac_for_every_length_and_split() {
        let data: Vec<u8> = (0..700u32).map(|i| (i * 7 + 3) as u8).collect();
        let splits: [&[usize]; 5] = [&[], &[1], &[63, 1, 64], &[55, 9, 130, 7], &[200, 3, 65]];
        for len in 0..data.len() {
            let plain: [u8; 32] = Sha256::digest(&data[..len]).into();
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"key").unwrap();
            mac.update(&data[..len]);
            let keyed: [u8; 32] = mac.finalize().into_bytes().into();
            for cuts in splits {
                assert_eq!(run(None, &data[..len], cuts), plain, "len {len} {cuts:?}");
                assert_eq!(run(Some(b"key"), &data[..len], cuts), keyed, "len {len}");
            }
        }
    }

    #[test]
    fn keyed_matches_hmac_for_keys_of_every_length() {
        let data = b"the canonical bytes";
        for n in 0..200usize {
            let key: Vec<u8> = (0..n).map(|i| (i * 31 + 7) as u8).collect();
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
            mac.update(data);
            let expected: [u8; 32] = mac.finalize().into_bytes().into();
            assert_eq!(run(Some(&key), data, &[]), expected, "key length {n}");
        }
    }

    #[test]
    fn starts_over_after_finishing() {
        let mut hasher = Hasher::new(Some(b"k"));
        let mut buf = b"abc".to_vec();
        hasher.finish(&mut buf);
        buf.extend_from_slice(b"abc");
        let expected: [u8; 32] = Sha256::digest(b"abc").into();
        assert_eq!(hasher.finish(&mut buf), expected);
        buf.extend_from_slice(b"abc");
        assert_eq!(hasher.finish(&mut buf), expected);
    }
}
