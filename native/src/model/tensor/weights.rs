//! The decoder's weights as device tensors: quantized matrices stay quantized in Candle's
//! `QMatMul` (its CUDA and Metal kernels take the GGUF types directly); norm weights and biases
//! are f32. Tensor names and the optional pieces per architecture are the CPU path's.

use std::io::{Read, Seek};

use candle_core::quantized::QMatMul;
use candle_core::{Device, Module, Tensor};

use crate::error::{EngineError, EngineResult};
use crate::model::Loader;

pub struct TensorLinear {
    weight: QMatMul,
    bias: Option<Tensor>,
    pub out_features: usize,
}

impl TensorLinear {
    /// x: (rows, in) contiguous; returns (rows, out).
    pub fn forward(&self, x: &Tensor) -> EngineResult<Tensor> {
        let y = self.weight.forward(x)?;
        Ok(match &self.bias {
            Some(bias) => y.broadcast_add(bias)?,
            None => y,
        })
    }
}

pub struct TensorLayer {
    pub attn_norm: Tensor,
    pub wq: TensorLinear,
    pub wk: TensorLinear,
    pub wv: TensorLinear,
    pub wo: TensorLinear,
    pub q_norm: Option<Tensor>,
    pub k_norm: Option<Tensor>,
    pub post_attn_norm: Option<Tensor>,
    pub ffn_norm: Tensor,
    pub gate: TensorLinear,
    pub up: TensorLinear,
    pub down: TensorLinear,
    pub post_ffn_norm: Option<Tensor>,
}

/// The loader's host vector, uploaded as a 1-D f32 tensor.
pub(super) fn device_vector<R: Read + Seek>(loader: &mut Loader<'_, R>, name: &str) -> EngineResult<Tensor> {
    let values = loader.vector(name)?;
    let len = values.len();
    Ok(Tensor::from_vec(values, len, loader.device)?)
}

pub(super) fn optional_device_vector<R: Read + Seek>(loader: &mut Loader<'_, R>, name: &str) -> EngineResult<Option<Tensor>> {
    if loader.has(name) {
        device_vector(loader, name).map(Some)
    } else {
        Ok(None)
    }
}

/// A weight matrix, (out_features, in_features), on the loader's device.
pub(super) fn matrix<R: Read + Seek>(loader: &mut Loader<'_, R>, name: &str) -> EngineResult<(QMatMul, usize)> {
    let tensor = loader.qtensor(name)?;
    let dims = tensor.shape().dims().to_vec();
    if dims.len() != 2 {
        return Err(EngineError::invalid_gguf(format!("tensor {name}: a weight matrix has shape {dims:?}")));
    }
    Ok((QMatMul::from_qtensor(tensor)?, dims[0]))
}

pub(super) fn linear<R: Read + Seek>(loader: &mut Loader<'_, R>, prefix: &str) -> EngineResult<TensorLinear> {
    let (weight, out_features) = matrix(loader, &format!("{prefix}.weight"))?;
    let bias = optional_device_vector(loader, &format!("{prefix}.bias"))?;
    Ok(TensorLinear { weight, bias, out_features })
}

pub(super) fn layer<R: Read + Seek>(loader: &mut Loader<'_, R>, il: usize) -> EngineResult<TensorLayer> {
    let p = format!("blk.{il}");
    Ok(TensorLayer {
        attn_norm: device_vector(loader, &format!("{p}.attn_norm.weight"))?,
        wq: linear(loader, &format!("{p}.attn_q"))?,
        wk: linear(loader, &format!("{p}.attn_k"))?,
        wv: linear(loader, &format!("{p}.attn_v"))?,
        wo: linear(loader, &format!("{p}.attn_output"))?,
        q_norm: optional_device_vector(loader, &format!("{p}.attn_q_norm.weight"))?,
        k_norm: optional_device_vector(loader, &format!("{p}.attn_k_norm.weight"))?,
        post_attn_norm: optional_device_vector(loader, &format!("{p}.post_attention_norm.weight"))?,
        ffn_norm: device_vector(loader, &format!("{p}.ffn_norm.weight"))?,
        gate: linear(loader, &format!("{p}.ffn_gate"))?,
        up: linear(loader, &format!("{p}.ffn_up"))?,
        down: linear(loader, &format!("{p}.ffn_down"))?,
        post_ffn_norm: optional_device_vector(loader, &format!("{p}.post_ffw_norm.weight"))?,
    })
}

/// The token embeddings, used for the lookup and, when the model ties them, the output projection.
pub struct Embeddings {
    pub table: QMatMul,
    pub vocab: usize,
}

impl Embeddings {
    pub(super) fn load<R: Read + Seek>(loader: &mut Loader<'_, R>) -> EngineResult<Self> {
        let (table, vocab) = matrix(loader, "token_embd.weight")?;
        Ok(Self { table, vocab })
    }

    /// Rows for `tokens`, (tokens, n_embd) in f32: ids are checked here, on the host, since a
    /// device gather has no way to report an out-of-range id.
    pub fn lookup(&self, tokens: &[u32], device: &Device) -> EngineResult<Tensor> {
        if let Some(bad) = tokens.iter().find(|id| **id as usize >= self.vocab) {
            return Err(EngineError::invalid_request(format!("token {bad} is outside the vocabulary of {}", self.vocab)));
        }
        let ids = Tensor::new(tokens, device)?;
        Ok(self.table.embedding(&ids)?.to_dtype(candle_core::DType::F32)?)
    }
}
