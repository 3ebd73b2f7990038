//! Causal attention over the f16 KV cache, computed as llama.cpp's CPU flash attention does
//! (ggml_compute_forward_flash_attn_ext_f16): fewer than 64 query rows take the one-row kernel
//! (Q rounded to f16, an online softmax with the output accumulated in f16), 64 or more take the
//! tiled kernel (f32 Q, 64-wide KV tiles, f32 accumulation). Rows run in parallel; each reads the
//! cache in place, so nothing is copied per token.

use half::f16;

use crate::ggml_math::{dot_f16, soft_max};

const Q_TILE: usize = 64;
const KV_TILE: usize = 64;

pub struct AttentionShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub scale: f32,
    pub window: Option<usize>,
    /// llama.cpp's thread count, which decides how its decode step splits a long KV view.
    pub threads: usize,
}

/// The per-layer cache: `[kv_head][capacity][head_dim]` for K and for V.
pub struct LayerCache {
    pub k: Vec<f16>,
    pub v: Vec<f16>,
}

impl LayerCache {
    pub fn new(n_head_kv: usize, capacity: usize, head_dim: usize) -> Self {
        let size = n_head_kv * capacity * head_dim;
        Self { k: vec![f16::ZERO; size], v: vec![f16::ZERO; size] }
    }

    /// Stores K and V rows, laid out (tokens, kv_heads, head_dim), at positions `start..`.
    pub fn store(&mut self, k: &[f32], v: &[f32], tokens: usize, shape: &AttentionShape, capacity: usize, start: usize) {
        let hd = shape.head_dim;
        for t in 0..tokens {
            for g in 0..shape.n_head_kv {
                let src = (t * shape.n_head_kv + g) * hd;
                let dst = (g * capacity + start + t) * hd;
                for d in 0..hd {
                    self.k[dst + d] = f16::from_f32(k[src + d]);
                    self.v[dst + d] = f16::from_f32(v[src + d]);
                }
            }
        }
    }
}

/// llama.cpp's CPU default is flash attention ("auto" resolves to on); `RBEE_CANDLE_ATTENTION=standard`
/// follows its non-flash kernels instead (to compare with `flashAttention: false`).
fn standard_attention() -> bool {
    static STANDARD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STANDARD.get_or_init(|| std::env::var_os("RBEE_CANDLE_ATTENTION").is_some_and(|v| v == "standard"))
}

#[inline]
fn visible(query_pos: usize, key_pos: usize, window: Option<usize>) -> bool {
    key_pos <= query_pos && window.is_none_or(|w| query_pos - key_pos < w)
}

/// q: (tokens, n_head, head_dim) for positions `start..start + tokens`; the cache holds K and V
/// for positions `0..start + tokens`. Writes (tokens, n_head * head_dim) to `out`.
pub fn attend(q: &[f32], cache: &LayerCache, capacity: usize, shape: &AttentionShape, start: usize, tokens: usize, out: &mut [f32]) {
    let hd = shape.head_dim;
    let group = shape.n_head / shape.n_head_kv;
    let tiled = tokens >= Q_TILE;
    let standard = standard_attention();
    let rows = tokens * shape.n_head;
    let one_row = |row: usize, dst: &mut [f32]| {
        let (t, h) = (row / shape.n_head, row % shape.n_head);
        let g = h / group;
        let q_row = &q[row * hd..(row + 1) * hd];
        let k = &cache.k[g * capacity * hd..(g + 1) * capacity * hd];
        let v = &cache.v[g * capacity * hd..(g + 1) * capacity * hd];
        let pos = start + t;
        // llama.cpp's KV view: the used cells padded to 256, at most the cache.
        let n_kv = ((start + tokens).div_ceil(256) * 256).clamp(256, capacity.max(256));
        if standard {
            attend_standard(q_row, k, v, hd, pos, start + tokens, shape, dst);
        } else if tokens == 1 && n_kv >= 512 {
            attend_split(q_row, k, v, hd, pos, n_kv, shape.threads.max(1), shape, dst);
        } else if tiled {
            attend_tiled(q_row, k, v, hd, pos, shape, dst);
        } else {
            attend_one(q_row, k, v, hd, pos, shape, dst);
        }
    };
    // Small work (a decode step) stays on this thread; larger work goes to Candle's own barrier
    // pool, the threads the matrix multiplications use (a second pool would oversubscribe them).
    if rows * (start + tokens) * hd < (1 << 20) {
        for (row, dst) in out.chunks_mut(hd).enumerate() {
            one_row(row, dst);
        }
        return;
    }
    let out_ptr = out.as_mut_ptr() as usize;
    candle_core::utils::barrier_pool().execute_chunked(rows, |range| {
        for row in range {
            // SAFETY: each row's slice is written by exactly one work item.
            let dst = unsafe { std::slice::from_raw_parts_mut((out_ptr as *mut f32).add(row * hd), hd) };
            one_row(row, dst);
        }
    });
}

/// llama.cpp without flash attention: KQ with Q rounded to f16, softmax, then V^T times the
/// probabilities rounded to f16, over the padded KV length.
#[allow(clippy::too_many_arguments)]
fn attend_standard(q: &[f32], k: &[f16], v: &[f16], hd: usize, pos: usize, used: usize, shape: &AttentionShape, dst: &mut [f32]) {
    let n_kv = used.div_ceil(256) * 256;
    let q16: Vec<f16> = q.iter().map(|x| f16::from_f32(*x)).collect();
    let mut scores = vec![f32::NEG_INFINITY; n_kv];
    for key in 0..used.min(pos + 1) {
        if visible(pos, key, shape.window) {
            scores[key] = dot_f16(&k[key * hd..(key + 1) * hd], &q16) * shape.scale + 0.0;
        }
    }
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum = soft_max(&mut scores, max);
    let inv = (1.0 / sum) as f32;
    let p16: Vec<f16> = scores.iter().map(|p| f16::from_f32(p * inv)).collect();
    let mut column = vec![f16::ZERO; n_kv];
    for d in 0..hd {
        for key in 0..used {
            column[key] = v[key * hd + d];
        }
        dst[d] = dot_f16(&column, &p16);
    }
}

/// ggml_compute_forward_flash_attn_ext_f16_one_chunk over the keys `range` of one query row:
/// the running maximum, the sum, and the output accumulated in f16 (not yet divided by the sum).
fn one_chunk(q16: &[f16], k: &[f16], v: &[f16], hd: usize, pos: usize, range: std::ops::Range<usize>, shape: &AttentionShape) -> (f32, f32, Vec<f16>) {
    let mut acc = vec![f16::ZERO; hd];
    let mut sum = 0f32;
    let mut max = f32::NEG_INFINITY;
    for key in range {
        if !visible(pos, key, shape.window) {
            continue;
        }
        let s = dot_f16(&k[key * hd..(key + 1) * hd], q16) * shape.scale + 0.0;
        let old = max;
        let mut ms = 1.0f32;
        let mut vs = 1.0f32;
        if s > max {
            max = s;
            ms = (old - max).exp();
            for a in acc.iter_mut() {
                *a = f16::from_f32(a.to_f32() * ms);
            }
        } else {
            vs = (s - max).exp();
        }
        let v_row = &v[key * hd..(key + 1) * hd];
        for (a, x) in acc.iter_mut().zip(v_row) {
            *a = f16::from_f32(x.to_f32().mul_add(vs, a.to_f32()));
        }
        // `S = S*ms + vs` in ggml, which the compiler contracts to a fused multiply-add.
        sum = sum.mul_add(ms, vs);
    }
    (max, sum, acc)
}

/// One query row through the one-row kernel.
fn attend_one(q: &[f32], k: &[f16], v: &[f16], hd: usize, pos: usize, shape: &AttentionShape, dst: &mut [f32]) {
    let q16: Vec<f16> = q.iter().map(|x| f16::from_f32(*x)).collect();
    let (_, sum, acc) = one_chunk(&q16, k, v, hd, pos, 0..pos + 1, shape);
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    for (d, a) in dst.iter_mut().zip(&acc) {
        *d = a.to_f32() * inv;
    }
}

/// The decode step once llama.cpp's KV view reaches 512 cells: the cells are split into one
/// chunk per thread, each chunk runs the one-row kernel, and the partial results are merged in
/// chunk order (ggml_flash_attn_ext_reduce_partials).
#[allow(clippy::too_many_arguments)]
fn attend_split(q: &[f32], k: &[f16], v: &[f16], hd: usize, pos: usize, n_kv: usize, threads: usize, shape: &AttentionShape, dst: &mut [f32]) {
    let q16: Vec<f16> = q.iter().map(|x| f16::from_f32(*x)).collect();
    let chunk = n_kv.div_ceil(threads);
    let mut max = f32::NEG_INFINITY;
    let mut sum = 0f32;
    let mut acc = vec![0f32; hd];
    for c in 0..threads {
        let begin = c * chunk;
        if begin >= n_kv {
            continue;
        }
        let end = (begin + chunk).min(n_kv).min(pos + 1);
        let (m_chunk, s_chunk, acc_chunk) = if begin < end { one_chunk(&q16, k, v, hd, pos, begin..end, shape) } else { (f32::NEG_INFINITY, 0.0, Vec::new()) };
        if s_chunk == 0.0 {
            continue;
        }
        let m_new = max.max(m_chunk);
        let scale_old = (max - m_new).exp();
        let scale_new = (m_chunk - m_new).exp();
        // `VKQ_final*scale_old + VKQ_chunk*scale_new`, the first product fused by the compiler.
        for (a, x) in acc.iter_mut().zip(&acc_chunk) {
            *a = a.mul_add(scale_old, x.to_f32() * scale_new);
        }
        sum = sum.mul_add(scale_old, s_chunk * scale_new);
        max = m_new;
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    for (d, a) in dst.iter_mut().zip(&acc) {
        *d = if sum == 0.0 { *a } else { a * inv };
    }
}

/// ggml_compute_forward_flash_attn_ext_tiled, one query row (rows are independent there).
fn attend_tiled(q: &[f32], k: &[f16], v: &[f16], hd: usize, pos: usize, shape: &AttentionShape, dst: &mut [f32]) {
    let mut acc = vec![0f32; hd];
    let mut sum = 0f32;
    let mut max = f32::NEG_INFINITY;
    let mut scores = [0f32; KV_TILE];
    let mut tile_start = 0;
    while tile_start <= pos {
        let any = (tile_start..(tile_start + KV_TILE).min(pos + 1)).any(|key| visible(pos, key, shape.window));
        if any {
            for (tk, score) in scores.iter_mut().enumerate() {
                let key = tile_start + tk;
                *score = if key <= pos && visible(pos, key, shape.window) {
                    let k_row = &k[key * hd..(key + 1) * hd];
                    let mut dot = 0f32;
                    for d in 0..hd {
                        dot = k_row[d].to_f32().mul_add(q[d], dot);
                    }
                    dot * shape.scale + 0.0
                } else {
                    f32::NEG_INFINITY
                };
            }
            let tile_max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let new_max = max.max(tile_max);
            if new_max > max {
                let ms = (max - new_max).exp();
                for a in acc.iter_mut() {
                    *a *= ms;
                }
                sum *= ms;
            }
            max = new_max;
            sum = (sum as f64 + soft_max(&mut scores, new_max)) as f32;
            for d in 0..hd {
                let mut a = acc[d];
                for (tk, p) in scores.iter().enumerate() {
                    let key = tile_start + tk;
                    let value = if key <= pos { v[key * hd + d].to_f32() } else { 0.0 };
                    a = value.mul_add(*p, a);
                }
                acc[d] = a;
            }
        }
        tile_start += KV_TILE;
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    for (d, a) in dst.iter_mut().zip(&acc) {
        *d = a * inv;
    }
}
