//! Rotary position embedding as ggml computes it on the CPU (ggml_rope_cache_init, rotate_pairs):
//! theta starts at the position and is multiplied by base^(-2/n_rot) per pair, in f32.

#[derive(Debug, Clone)]
pub struct Rope {
    pub n_rot: usize,
    pub theta_scale: f32,
    pub freq_scale: f32,
    pub freq_factors: Option<Vec<f32>>,
    pub neox: bool,
}

impl Rope {
    pub fn new(n_rot: usize, base: f32, freq_scale: f32, freq_factors: Option<Vec<f32>>, neox: bool) -> Self {
        Self { n_rot, theta_scale: base.powf(-2.0 / n_rot as f32), freq_scale, freq_factors, neox }
    }

    /// cos and sin, interleaved, for one position.
    pub fn cache(&self, position: usize, out: &mut Vec<f32>) {
        out.clear();
        let mut theta = position as f32;
        for i0 in (0..self.n_rot).step_by(2) {
            let ff = self.freq_factors.as_ref().map_or(1.0, |f| f[i0 / 2]);
            let angle = self.freq_scale * (theta / ff);
            out.push(angle.cos());
            out.push(angle.sin());
            theta *= self.theta_scale;
        }
    }

    /// Rotates `x`, laid out (tokens, heads, head_dim), for positions `start..`.
    pub fn apply(&self, x: &mut [f32], tokens: usize, heads: usize, head_dim: usize, start: usize) {
        let mut cache = Vec::with_capacity(self.n_rot);
        let half = self.n_rot / 2;
        for t in 0..tokens {
            self.cache(start + t, &mut cache);
            for h in 0..heads {
                let row = &mut x[(t * heads + h) * head_dim..(t * heads + h + 1) * head_dim];
                for i0 in (0..self.n_rot).step_by(2) {
                    let (cos, sin) = (cache[i0], cache[i0 + 1]);
                    let (a, b) = if self.neox { (i0 / 2, i0 / 2 + half) } else { (i0, i0 + 1) };
                    let (x0, x1) = (row[a], row[b]);
                    // ggml's `x0*cos - x1*sin` and `x0*sin + x1*cos`, as the compiler contracts them.
                    row[a] = x0.mul_add(cos, -(x1 * sin));
                    row[b] = x0.mul_add(sin, x1 * cos);
                }
            }
        }
    }
}
