//! Fault injection for the local stack, so a soak test can prove that nothing is lost and
//! nothing is sent twice when the services misbehave the way the real ones do.
//!
//! - [`aws`]: [`AwsFaultProxy`], an HTTP reverse proxy in front of moto that answers a seeded
//!   share of SNS publishes, DynamoDB writes, SQS calls and stream reads with the error bodies
//!   the real services send (or forwards a write and then hides its success).
//! - The carrier side lives with the sandbox: [`crate::sandbox::faults`].
//!
//! Every decision is drawn from [`draw`]: the `n`-th eligible call of a stream gets the same
//! verdict for the same seed, whatever the timing.

pub mod aws;

pub use aws::{AwsFaultPlan, AwsFaultProxy, FaultError};

/// A uniform number in `[0, 1)` for the `n`-th call of `stream` under `seed` (splitmix64 over
/// the seed, an FNV-1a hash of the stream's name and `n`). Pure: same inputs, same number.
pub fn draw(seed: u64, stream: &str, n: u64) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in stream.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = seed
        .wrapping_add(h.rotate_left(17))
        .wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    // The top 53 bits as a fraction: exactly representable, strictly below 1.
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// A share as given, made safe: NaN and negatives are 0, anything above 1 is 1.
pub fn share(s: f64) -> f64 {
    if s.is_nan() {
        0.0
    } else {
        s.clamp(0.0, 1.0)
    }
}

/// Pick the first of `shares` whose cumulative share exceeds `u`; `None` when `u` falls past
/// them all (the call is not faulted). Shares are made safe with [`share`].
pub fn pick(u: f64, shares: &[f64]) -> Option<usize> {
    let mut acc = 0.0;
    for (i, s) in shares.iter().enumerate() {
        acc += share(*s);
        if u < acc {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_deterministic_uniform_and_stream_specific() {
        let a: Vec<f64> = (0..1000).map(|n| draw(7, "sqs", n)).collect();
        let b: Vec<f64> = (0..1000).map(|n| draw(7, "sqs", n)).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|u| (0.0..1.0).contains(u)));
        let other_seed: Vec<f64> = (0..1000).map(|n| draw(8, "sqs", n)).collect();
        let other_stream: Vec<f64> = (0..1000).map(|n| draw(7, "sns", n)).collect();
        assert_ne!(a, other_seed);
        assert_ne!(a, other_stream);
        let below = a.iter().filter(|u| **u < 0.3).count();
        assert!((240..=360).contains(&below), "{below} of 1000 below 0.3");
    }

    #[test]
    fn pick_follows_cumulative_shares() {
        assert_eq!(pick(0.05, &[0.1, 0.2]), Some(0));
        assert_eq!(pick(0.25, &[0.1, 0.2]), Some(1));
        assert_eq!(pick(0.35, &[0.1, 0.2]), None);
        assert_eq!(pick(0.0, &[0.0, 0.0]), None);
        assert_eq!(pick(0.99, &[f64::NAN, 2.0]), Some(1));
        assert_eq!(pick(0.5, &[-1.0, 0.4]), None);
    }
}
