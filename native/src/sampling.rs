//! Token selection, in llama.cpp's order: top-k, then top-p on the softmax of the remaining
//! logits, then temperature, then a draw from a seeded ChaCha RNG (the same seed and logits give
//! the same tokens on every platform). Temperature 0 is greedy: the first maximum, as
//! llama.cpp's greedy sampler picks it.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{EngineError, EngineResult};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self { temperature: 0.0, top_k: None, top_p: None, seed: None }
    }

    pub fn validate(&self) -> EngineResult<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(EngineError::invalid_request(format!("temperature must be a number >= 0, got {}", self.temperature)));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(EngineError::invalid_request(format!("top_p must be in (0, 1], got {p}")));
            }
        }
        Ok(())
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &value) in logits.iter().enumerate() {
        if value > logits[best] {
            best = i;
        }
    }
    best as u32
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let seed = params.seed.unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
            nanos ^ (std::process::id() as u64).rotate_left(32)
        });
        Self { params, rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    pub fn is_greedy(&self) -> bool {
        self.params.temperature <= 0.0 || self.params.top_k == Some(1)
    }

    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.is_greedy() || logits.len() < 2 {
            return argmax(logits);
        }
        // Candidates sorted by logit, best first: all of them, or only as many as top-k and
        // top-p need (sorting 256k logits per token would cost more than it has to).
        let n = logits.len();
        let wanted = match self.params.top_k {
            Some(k) if k > 0 && k < n => k,
            _ => n,
        };
        let top_p = self.params.top_p.filter(|p| *p < 1.0);
        let max_logit = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        // Top-p needs the softmax over the top-k candidates; it is computed once, then the best
        // candidates are sorted in growing batches until their mass reaches p.
        let total = if top_p.is_some() { sum_top_exp(logits, wanted, max_logit) } else { 0.0 };
        let mut take = if top_p.is_some() { wanted.min(64) } else { wanted };
        let mut candidates: Vec<u32>;
        loop {
            candidates = top_indices(logits, take);
            let Some(p) = top_p else { break };
            let mut cumulative = 0.0f64;
            let mut cut = None;
            for (rank, &i) in candidates.iter().enumerate() {
                cumulative += ((logits[i as usize] - max_logit) as f64).exp() / total;
                if cumulative >= p as f64 {
                    cut = Some(rank + 1);
                    break;
                }
            }
            match cut {
                Some(keep) => {
                    candidates.truncate(keep.max(1));
                    break;
                }
                None if take >= wanted => break,
                None => take = (take * 4).min(wanted),
            }
        }
        let temperature = self.params.temperature;
        let scaled: Vec<f64> = candidates.iter().map(|&i| ((logits[i as usize] - max_logit) / temperature) as f64).collect();
        let max_scaled = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = scaled.iter().map(|s| (s - max_scaled).exp()).collect();
        let total: f64 = weights.iter().sum();
        let mut target = self.rng.random::<f64>() * total;
        for (i, w) in weights.iter().enumerate() {
            if target < *w {
                return candidates[i];
            }
            target -= w;
        }
        *candidates.last().expect("at least one candidate")
    }
}

/// The indices of the `k` largest logits, largest first (ties: lower index first).
fn top_indices(logits: &[f32], k: usize) -> Vec<u32> {
    let order = |a: &u32, b: &u32| logits[*b as usize].partial_cmp(&logits[*a as usize]).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(b));
    let mut indices: Vec<u32> = (0..logits.len() as u32).collect();
    if k < indices.len() {
        indices.select_nth_unstable_by(k, order);
        indices.truncate(k);
    }
    indices.sort_by(order);
    indices
}

fn sum_top_exp(logits: &[f32], k: usize, max_logit: f32) -> f64 {
    if k >= logits.len() {
        return logits.iter().map(|&l| ((l - max_logit) as f64).exp()).sum();
    }
    top_indices(logits, k).iter().map(|&i| ((logits[i as usize] - max_logit) as f64).exp()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        // A smooth, many-way distribution, so sampling has real choices to make.
        (0..1000).map(|i| ((i * 7919) % 1000) as f32 / 250.0).collect()
    }

    fn run(params: SamplingParams, steps: usize) -> Vec<u32> {
        let mut sampler = Sampler::new(params);
        let logits = logits();
        (0..steps).map(|_| sampler.sample(&logits)).collect()
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let logits = vec![0.5, 2.0, -1.0, 2.0];
        assert_eq!(Sampler::new(SamplingParams::greedy()).sample(&logits), 1);
        let top1 = SamplingParams { temperature: 0.8, top_k: Some(1), top_p: None, seed: Some(3) };
        assert_eq!(Sampler::new(top1).sample(&logits), 1);
    }

    #[test]
    fn the_same_seed_gives_the_same_tokens() {
        let params = SamplingParams { temperature: 0.9, top_k: None, top_p: None, seed: Some(42) };
        let first = run(params, 64);
        assert_eq!(first, run(params, 64));
        let other = run(SamplingParams { seed: Some(43), ..params }, 64);
        assert_ne!(first, other, "a different seed should draw differently");
        let distinct: std::collections::HashSet<_> = first.iter().collect();
        assert!(distinct.len() > 10, "temperature sampling should vary: {distinct:?}");
    }

    #[test]
    fn seeded_top_k_and_top_p_are_deterministic_and_bounded() {
        let logits = logits();
        let top5 = top_indices(&logits, 5);
        let params = SamplingParams { temperature: 1.5, top_k: Some(5), top_p: None, seed: Some(7) };
        let drawn = run(params, 200);
        assert!(drawn.iter().all(|t| top5.contains(t)), "top-k keeps the 5 best");
        assert_eq!(drawn, run(params, 200));

        let nucleus = SamplingParams { temperature: 1.0, top_k: None, top_p: Some(0.2), seed: Some(9) };
        let drawn = run(nucleus, 200);
        assert_eq!(drawn, run(nucleus, 200));
        let max = logits.iter().copied().fold(f32::MIN, f32::max);
        let total: f64 = logits.iter().map(|l| ((l - max) as f64).exp()).sum();
        for t in &drawn {
            // Every kept token is among the smallest set whose mass reaches 0.2.
            let better: f64 = logits.iter().filter(|l| **l > logits[*t as usize]).map(|l| ((l - max) as f64).exp()).sum();
            assert!(better / total < 0.2, "token {t} is outside the nucleus");
        }
    }

    #[test]
    fn invalid_parameters_are_errors() {
        assert!(SamplingParams { temperature: -1.0, ..SamplingParams::greedy() }.validate().is_err());
        assert!(SamplingParams { top_p: Some(0.0), ..SamplingParams::greedy() }.validate().is_err());
        assert!(SamplingParams { top_p: Some(1.0), ..SamplingParams::greedy() }.validate().is_ok());
    }
}
