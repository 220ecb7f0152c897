//! The binary encoding of the [`messages`](super::messages): `to_bytes()` / `from_bytes()`.

use super::config::SecAggConfig;
use super::messages::*;
use super::shamir::{SecretShare, SHARE_BYTES};
use super::wire::{decode_error, Reader, Writer};
use super::ClientId;
use crate::error::Result;

fn write_ids(w: &mut Writer, ids: &[ClientId]) {
    w.len(ids.len());
    ids.iter().for_each(|&id| w.u64(id));
}

fn read_ids(r: &mut Reader<'_>) -> Result<Vec<ClientId>> {
    let n = r.len(8)?;
    (0..n).map(|_| r.u64()).collect()
}

fn write_envelopes(w: &mut Writer, envs: &[Envelope]) {
    w.len(envs.len());
    for e in envs {
        w.u64(e.src);
        w.u64(e.dst);
        w.bytes(&e.ciphertext);
    }
}

fn read_envelopes(r: &mut Reader<'_>) -> Result<Vec<Envelope>> {
    let n = r.len(20)?;
    (0..n)
        .map(|_| {
            Ok(Envelope {
                src: r.u64()?,
                dst: r.u64()?,
                ciphertext: r.bytes()?,
            })
        })
        .collect()
}

fn opt(v: Option<usize>) -> u64 {
    v.map_or(0, |x| x as u64)
}

fn unopt(v: usize) -> Option<usize> {
    (v != 0).then_some(v)
}

/// Implements `to_bytes`/`from_bytes` from a tag, a writer body and a reader body.
macro_rules! wire_message {
    ($ty:ident, $tag:expr, |$s:ident, $w:ident| $enc:block, |$r:ident| $dec:block) => {
        impl $ty {
            /// The compact binary encoding.
            pub fn to_bytes(&self) -> Vec<u8> {
                let $s = self;
                let mut $w = Writer::new($tag);
                $enc
                $w.buf
            }

            /// Decode (untrusted) bytes; malformed, truncated or trailing data give
            /// [`Error::SecAgg`](crate::Error::SecAgg) at stage `decode`.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
                let mut $r = Reader::new(bytes, $tag, stringify!($ty))?;
                let out = $dec;
                $r.finish()?;
                Ok(out)
            }
        }
    };
}

wire_message!(
    Setup,
    1,
    |s, w| {
        w.u64(s.run);
        w.u64(s.round);
        w.u64(s.dim);
        let c = &s.config;
        w.u64(c.num_clients as u64);
        w.u64(opt(c.neighbours));
        w.u64(opt(c.threshold));
        w.f64(c.clipping_range);
        w.u64(c.target_range);
        w.u32(c.modulus_bits);
        w.f64(c.max_weight);
    },
    |r| {
        Setup {
            run: r.u64()?,
            round: r.u64()?,
            dim: r.u64()?,
            config: SecAggConfig {
                num_clients: r.usize()?,
                neighbours: unopt(r.usize()?),
                threshold: unopt(r.usize()?),
                clipping_range: r.f64()?,
                target_range: r.u64()?,
                modulus_bits: r.u32()?,
                max_weight: r.f64()?,
            },
        }
    }
);

wire_message!(
    AdvertiseKeys,
    2,
    |s, w| {
        w.u64(s.run);
        w.u64(s.round);
        w.u64(s.client);
        w.array32(&s.mask_pk);
        w.array32(&s.enc_pk);
        w.bytes(&s.signature);
    },
    |r| {
        AdvertiseKeys {
            run: r.u64()?,
            round: r.u64()?,
            client: r.u64()?,
            mask_pk: r.array32()?,
            enc_pk: r.array32()?,
            signature: r.bytes()?,
        }
    }
);

wire_message!(
    KeyDirectory,
    3,
    |s, w| {
        w.u64(s.run);
        w.u64(s.round);
        w.u64(s.recipient);
        w.len(s.peers.len());
        for p in &s.peers {
            w.u64(p.client);
            w.array32(&p.mask_pk);
            w.array32(&p.enc_pk);
            w.bytes(&p.signature);
        }
    },
    |r| {
        let run = r.u64()?;
        let round = r.u64()?;
        let recipient = r.u64()?;
        let n = r.len(76)?;
        let peers = (0..n)
            .map(|_| {
                Ok(PeerKeys {
                    client: r.u64()?,
                    mask_pk: r.array32()?,
                    enc_pk: r.array32()?,
                    signature: r.bytes()?,
                })
            })
            .collect::<Result<_>>()?;
        KeyDirectory {
            run,
            round,
            recipient,
            peers,
        }
    }
);

wire_message!(
    ShareKeys,
    4,
    |s, w| {
        w.u64(s.run);
        w.u64(s.round);
        w.u64(s.client);
        write_envelopes(&mut w, &s.envelopes);
    },
    |r| {
        ShareKeys {
            run: r.u64()?,
            round: r.u64()?,
            client: r.u64()?,
            envelopes: read_envelopes(&mut r)?,
        }
    }
);

wire_message!(
    ForwardedShares,
    5,
    |s, w| {
        w.u64(s.run);
        w.u64(s.round);
        w.u64(s.recipient);
        write_envelopes(&mut w, &s.envelopes);
    },
    |r| {
        ForwardedShares {
            run: r.u64()?,
            round: r.u64()?,
            recipient: r.u64()?,
            envelopes: read_envelopes(&mut r)?,
        }
    }
);

wire_message!(
    MaskedInput,
    6,
    |s, w| {
        w.u64(s.run);
        w.u64(s.round);
        w.u64(s.client);
        w.u32(s.modulus_bits);
        w.u64(s.values.len() as u64);
        w.buf.reserve(s.values.len() * 8);
        if s.modulus_bits == 32 {
            s.values.iter().for_each(|&v| w.u32(v as u32));
        } else {
            s.values.iter().for_each(|&v| w.u64(v));
        }
    },
    |r| {
        let run = r.u64()?;
        let round = r.u64()?;
        let client = r.u64()?;
        let modulus_bits = r.u32()?;
        let bytes_per = match modulus_bits {
            32 => 4,
            64 => 8,
            b => {
                return Err(decode_error(format!(
                    "modulus bits must be 32 or 64, got {b}"
                )))
            }
        };
        let n = r.usize()?;
        if n.saturating_mul(bytes_per) != r.remaining() {
            return Err(decode_error(format!(
                "{n} values do not match {} bytes",
                r.remaining()
            )));
        }
        let body = r.take(n * bytes_per)?;
        let values = if bytes_per == 4 {
            body.chunks_exact(4)
                .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        } else {
            body.chunks_exact(8)
                .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect()
        };
        MaskedInput {
            run,
            round,
            client,
            modulus_bits,
            values,
        }
    }
);

wire_message!(
    UnmaskRequest,
    7,
    |s, w| {
        w.u64(s.run);
        w.u64(s.round);
        w.u64(s.recipient);
        write_ids(&mut w, &s.alive);
        write_ids(&mut w, &s.dropped);
        w.len(s.signatures.len());
        for sig in &s.signatures {
            w.u64(sig.run);
            w.u64(sig.round);
            w.u64(sig.client);
            w.bytes(&sig.signature);
        }
    },
    |r| {
        let run = r.u64()?;
        let round = r.u64()?;
        let recipient = r.u64()?;
        let alive = read_ids(&mut r)?;
        let dropped = read_ids(&mut r)?;
        let n = r.len(20)?;
        let signatures = (0..n)
            .map(|_| {
                Ok(ConsistencySignature {
                    run: r.u64()?,
                    round: r.u64()?,
                    client: r.u64()?,
                    signature: r.bytes()?,
                })
            })
            .collect::<Result<_>>()?;
        UnmaskRequest {
            run,
            round,
            recipient,
            alive,
            dropped,
            signatures,
        }
    }
);

wire_message!(
    UnmaskResponse,
    8,
    |s, w| {
        w.u64(s.run);
        w.u64(s.round);
        w.u64(s.client);
        w.len(s.shares.len());
        for sh in &s.shares {
            w.u64(sh.owner);
            w.u8(match sh.kind {
                ShareKind::SelfMaskSeed => 0,
                ShareKind::MaskKey => 1,
            });
            w.buf.extend_from_slice(&sh.share.to_bytes());
        }
    },
    |r| {
        let run = r.u64()?;
        let round = r.u64()?;
        let client = r.u64()?;
        let n = r.len(9 + SHARE_BYTES)?;
        let shares = (0..n)
            .map(|_| {
                let owner = r.u64()?;
                let kind = match r.u8()? {
                    0 => ShareKind::SelfMaskSeed,
                    1 => ShareKind::MaskKey,
                    k => return Err(decode_error(format!("unknown share kind {k}"))),
                };
                let share = SecretShare::from_bytes(r.take(SHARE_BYTES)?)
                    .map_err(|e| decode_error(e.to_string()))?;
                Ok(RevealedShare { owner, kind, share })
            })
            .collect::<Result<_>>()?;
        UnmaskResponse {
            run,
            round,
            client,
            shares,
        }
    }
);

wire_message!(
    ConsistencyCheck,
    9,
    |s, w| {
        w.u64(s.run);
        w.u64(s.round);
        w.u64(s.recipient);
        write_ids(&mut w, &s.survivors);
    },
    |r| {
        ConsistencyCheck {
            run: r.u64()?,
            round: r.u64()?,
            recipient: r.u64()?,
            survivors: read_ids(&mut r)?,
        }
    }
);

wire_message!(
    ConsistencySignature,
    10,
    |s, w| {
        w.u64(s.run);
        w.u64(s.round);
        w.u64(s.client);
        w.bytes(&s.signature);
    },
    |r| {
        ConsistencySignature {
            run: r.u64()?,
            round: r.u64()?,
            client: r.u64()?,
            signature: r.bytes()?,
        }
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_input_packs_by_modulus() -> Result<()> {
        let m = MaskedInput {
            run: 3,
            round: 1,
            client: 2,
            modulus_bits: 32,
            values: vec![1, 2, 3],
        };
        let b = m.to_bytes();
        assert_eq!(b.len(), 5 + 8 + 8 + 8 + 4 + 8 + 12);
        assert_eq!(MaskedInput::from_bytes(&b)?, m);
        let m64 = MaskedInput {
            modulus_bits: 64,
            values: vec![u64::MAX],
            ..m
        };
        assert_eq!(MaskedInput::from_bytes(&m64.to_bytes())?, m64);
        Ok(())
    }

    #[test]
    fn setup_roundtrip() -> Result<()> {
        let s = Setup {
            run: 4,
            round: 9,
            dim: 100,
            config: SecAggConfig::new(20).with_neighbours(7).with_threshold(5),
        };
        assert_eq!(Setup::from_bytes(&s.to_bytes())?, s);
        Ok(())
    }

    #[test]
    fn huge_length_prefix_is_rejected_without_allocating() {
        let mut b = Writer::new(7);
        b.u64(0);
        b.u64(1);
        b.u64(2);
        b.u32(u32::MAX);
        assert!(UnmaskRequest::from_bytes(&b.buf).is_err());
        let mut m = Writer::new(6);
        m.u64(0);
        m.u64(1);
        m.u64(2);
        m.u32(32);
        m.u64(u64::MAX);
        assert!(MaskedInput::from_bytes(&m.buf).is_err());
    }
}
