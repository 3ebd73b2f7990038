//! A decoder's weights on the device: raw GGUF blocks of each matrix (or of this rank's part
//! of it), read straight from the file, and the small vectors (norms, biases, rope frequencies).

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use candle_core::quantized::gguf_file::Content;

use super::memory::{DeviceArena, DeviceBuffer};
use super::plan::{MatShape, Part};
use crate::error::{EngineError, EngineResult};
use crate::model::Loader;

pub(super) struct Mat {
    pub(super) buffer: DeviceBuffer,
    pub(super) shape: MatShape,
}

pub(super) struct Layer {
    pub(super) attn_norm: DeviceBuffer,
    pub(super) qkv: [Mat; 3],
    pub(super) qkv_bias: [Option<DeviceBuffer>; 3],
    pub(super) q_norm: Option<DeviceBuffer>,
    pub(super) k_norm: Option<DeviceBuffer>,
    pub(super) o: Mat,
    pub(super) post_attn_norm: Option<DeviceBuffer>,
    pub(super) ffn_norm: DeviceBuffer,
    pub(super) gate: Mat,
    pub(super) up: Mat,
    pub(super) down: Mat,
    pub(super) post_ffn_norm: Option<DeviceBuffer>,
}

/// The raw blocks of (a part of) one weight matrix, read straight from the file into device memory.
pub(super) fn matrix<R: Read + Seek>(loader: &mut Loader<'_, R>, mem: &Arc<DeviceArena>, name: &str, part: &Part) -> EngineResult<Mat> {
    let (shape, data) = read_matrix(loader, name, part)?;
    Ok(Mat { buffer: mem.upload(&data)?, shape })
}

/// The raw blocks of (a part of) one weight matrix, read from the file (progress counted): a rank
/// of a group reads only the bytes of its part.
pub(super) fn read_matrix<R: Read + Seek>(loader: &mut Loader<'_, R>, name: &str, part: &Part) -> EngineResult<(MatShape, Vec<u8>)> {
    let full = matrix_shape(loader.content, name)?;
    let runs = part.runs(name, full)?;
    let start = loader.content.tensor_data_offset + loader.content.tensor_infos[name].offset;
    let mut data = vec![0u8; runs.iter().map(|r| r.1).sum()];
    let mut at = 0;
    for (offset, bytes) in runs {
        loader
            .reader
            .seek(SeekFrom::Start(start + offset as u64))
            .and_then(|_| loader.reader.read_exact(&mut data[at..at + bytes]))
            .map_err(|e| EngineError::invalid_gguf(format!("tensor {name}: {e}")))?;
        at += bytes;
    }
    loader.bytes += data.len();
    loader.loaded += 1;
    (loader.progress)(loader.loaded as f64 / loader.total.max(1) as f64);
    Ok((part.shape(full), data))
}

pub(super) fn matrix_shape(content: &Content, name: &str) -> EngineResult<MatShape> {
    let info = content.tensor_infos.get(name).ok_or_else(|| EngineError::invalid_gguf(format!("tensor {name} is missing")))?;
    MatShape::new(name, info.ggml_dtype, info.shape.dims())
}

pub(super) fn vector<R: Read + Seek>(loader: &mut Loader<'_, R>, mem: &Arc<DeviceArena>, name: &str) -> EngineResult<DeviceBuffer> {
    let values = loader.vector(name)?;
    mem.upload(&values)
}

pub(super) fn optional_vector<R: Read + Seek>(
    loader: &mut Loader<'_, R>,
    mem: &Arc<DeviceArena>,
    name: &str,
    part: &Part,
) -> EngineResult<Option<DeviceBuffer>> {
    if loader.has(name) {
        let values = part.of_vector(name, loader.vector(name)?)?;
        mem.upload(&values).map(Some)
    } else {
        Ok(None)
    }
}

/// base^(-2i/n_rot) for each pair, as ggml builds it (repeated f32 products).
pub(super) fn inv_freq(n_rot: usize, base: f32) -> Vec<f32> {
    let scale = base.powf(-2.0 / n_rot as f32);
    let mut theta = 1.0f32;
    (0..n_rot / 2)
        .map(|_| {
            let v = theta;
            theta *= scale;
            v
        })
        .collect()
}
