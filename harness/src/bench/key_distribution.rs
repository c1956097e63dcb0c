//! How a keyed workload picks its keys from `key_space`: uniformly, or skewed by a Zipf law
//! (key `k` drawn with probability ∝ 1/(k+1)^s: key 0 is the hottest) — the skew real keyed
//! traffic has (a few tenants or users dominate), and what the broker's hot-key report must
//! name.
//!
//! Owns: parsing `uniform` / `zipf` / `zipf:S` and drawing keys. Must never: allocate per draw
//! (the Zipf sampler precomputes its cumulative distribution once, at most
//! [`MAX_ZIPF_KEY_SPACE`] entries, and draws by binary search).

use serde::Serialize;

use super::payload::Rng;

/// Largest key space a Zipf distribution takes (its table is 8 bytes a key: 8 MiB).
pub const MAX_ZIPF_KEY_SPACE: u64 = 1 << 20;
/// The Zipf exponent when none is given.
pub const DEFAULT_ZIPF_EXPONENT: f64 = 1.0;

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum KeyDistribution {
    #[default]
    Uniform,
    Zipf {
        exponent: f64,
    },
}

impl KeyDistribution {
    /// `uniform`, `zipf` (exponent 1) or `zipf:S` (0 < S ≤ 10).
    pub fn parse(text: &str) -> Result<KeyDistribution, String> {
        let text = text.trim();
        match text.split_once(':') {
            None if text == "uniform" => Ok(KeyDistribution::Uniform),
            None if text == "zipf" => Ok(KeyDistribution::Zipf { exponent: DEFAULT_ZIPF_EXPONENT }),
            Some(("zipf", s)) => match s.trim().parse::<f64>() {
                Ok(exponent) if exponent > 0.0 && exponent <= 10.0 => Ok(KeyDistribution::Zipf { exponent }),
                _ => Err(format!("key distribution {text:?}: the Zipf exponent must be in (0, 10]")),
            },
            _ => Err(format!("key distribution {text:?}: uniform, zipf or zipf:EXPONENT")),
        }
    }
}

impl std::str::FromStr for KeyDistribution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        KeyDistribution::parse(s)
    }
}

/// Draws keys in `0..key_space`.
pub enum KeySampler {
    Uniform {
        key_space: u64,
    },
    /// Cumulative probabilities of keys 0, 1, …; the last is 1.
    Zipf {
        cumulative: Vec<f64>,
    },
}

impl KeySampler {
    pub fn new(distribution: KeyDistribution, key_space: u64) -> Result<KeySampler, String> {
        match distribution {
            KeyDistribution::Uniform => Ok(KeySampler::Uniform { key_space: key_space.max(1) }),
            KeyDistribution::Zipf { exponent } => {
                if key_space == 0 || key_space > MAX_ZIPF_KEY_SPACE {
                    return Err(format!("a Zipf key distribution takes a key space of 1 to {MAX_ZIPF_KEY_SPACE}"));
                }
                let mut cumulative = Vec::with_capacity(key_space as usize);
                let mut total = 0.0;
                for k in 0..key_space {
                    total += 1.0 / ((k + 1) as f64).powf(exponent);
                    cumulative.push(total);
                }
                for c in &mut cumulative {
                    *c /= total;
                }
                Ok(KeySampler::Zipf { cumulative })
            }
        }
    }

    pub fn draw(&self, rng: &mut Rng) -> u64 {
        match self {
            KeySampler::Uniform { key_space } => rng.below(*key_space),
            KeySampler::Zipf { cumulative } => {
                let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                let k = cumulative.partition_point(|c| *c <= u);
                k.min(cumulative.len() - 1) as u64
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!(KeyDistribution::parse("uniform"), Ok(KeyDistribution::Uniform));
        assert_eq!(KeyDistribution::parse("zipf"), Ok(KeyDistribution::Zipf { exponent: 1.0 }));
        assert_eq!(KeyDistribution::parse("zipf:1.5"), Ok(KeyDistribution::Zipf { exponent: 1.5 }));
        for bad in ["zipf:0", "zipf:-1", "zipf:x", "normal", ""] {
            assert!(KeyDistribution::parse(bad).is_err(), "{bad}");
        }
        assert!(KeySampler::new(KeyDistribution::Zipf { exponent: 1.0 }, MAX_ZIPF_KEY_SPACE + 1).is_err());
    }

    #[test]
    fn zipf_draws_follow_the_law() {
        // s = 1 over 100 keys: P(0) = 1/H(100) ≈ 0.193, P(1) ≈ 0.0966, P(9) ≈ 0.0193.
        let sampler = KeySampler::new(KeyDistribution::Zipf { exponent: 1.0 }, 100).unwrap();
        let mut rng = Rng::new(42);
        let mut counts = [0u64; 100];
        let n = 200_000;
        for _ in 0..n {
            counts[sampler.draw(&mut rng) as usize] += 1;
        }
        let h100: f64 = (1..=100).map(|k| 1.0 / k as f64).sum();
        for (k, expected) in [(0usize, 1.0 / h100), (1, 0.5 / h100), (9, 0.1 / h100)] {
            let seen = counts[k] as f64 / n as f64;
            assert!((seen - expected).abs() < expected * 0.05, "key {k}: {seen} vs {expected}");
        }
        let uniform = KeySampler::new(KeyDistribution::Uniform, 100).unwrap();
        assert!((0..1000).all(|_| uniform.draw(&mut rng) < 100));
    }
}
