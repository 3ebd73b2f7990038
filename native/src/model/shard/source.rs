//! A GGUF read in slices: the file is memory-mapped once and a rank copies out only the bytes of
//! its slice of each matrix (whole output rows are contiguous; a range of input columns is a run
//! of whole blocks in every row), so no rank ever holds, or reads, the whole model.

use std::io::Cursor;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::gguf_file::{Content, TensorInfo};
use candle_core::quantized::QTensor;
use candle_core::Device;

use crate::error::{EngineError, EngineResult, ErrorCode};

pub struct SlicedGguf {
    pub content: Content,
    bytes: Arc<dyn AsRef<[u8]> + Send + Sync>,
    /// Bytes of tensor data this rank copied out of the file.
    pub copied: usize,
}

struct Mapped(memmap2::Mmap);

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl SlicedGguf {
    pub fn open(path: &Path) -> EngineResult<Self> {
        // The header checks (truncation, block sizes) are the engine's usual ones.
        drop(crate::gguf::open(path)?);
        let file = std::fs::File::open(path).map_err(|e| EngineError::new(ErrorCode::FileNotFound, format!("cannot open {}: {e}", path.display())))?;
        // SAFETY: the model file is read-only for the life of the worker; a file changed under a
        // running worker is outside what any GGUF loader can defend against.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| EngineError::invalid_gguf(format!("cannot map {}: {e}", path.display())))?;
        Self::from_bytes(Arc::new(Mapped(map)))
    }

    /// A GGUF held in memory (tests).
    pub fn from_bytes(bytes: Arc<dyn AsRef<[u8]> + Send + Sync>) -> EngineResult<Self> {
        let content = Content::read(&mut Cursor::new((*bytes).as_ref())).map_err(|e| EngineError::invalid_gguf(format!("not a readable GGUF: {e}")))?;
        Ok(Self { content, bytes, copied: 0 })
    }

    pub fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// A copy of a tensor's entry (Candle's `TensorInfo` is not `Clone`).
    fn info_of(&self, name: &str) -> EngineResult<TensorInfo> {
        let info = self.info(name)?;
        Ok(TensorInfo { ggml_dtype: info.ggml_dtype, shape: info.shape.clone(), offset: info.offset })
    }

    fn info(&self, name: &str) -> EngineResult<&TensorInfo> {
        self.content.tensor_infos.get(name).ok_or_else(|| EngineError::invalid_gguf(format!("tensor {name} is missing")))
    }

    /// (rows, columns, bytes per row) of a matrix; a vector is one row.
    fn layout(info: &TensorInfo, name: &str) -> EngineResult<(usize, usize, usize)> {
        let dims = info.shape.dims();
        let (rows, cols) = match dims {
            [cols] => (1, *cols),
            [rows, cols] => (*rows, *cols),
            other => return Err(EngineError::invalid_gguf(format!("tensor {name} has shape {other:?}; a matrix or a vector was expected"))),
        };
        let block = info.ggml_dtype.block_size();
        if !cols.is_multiple_of(block) {
            return Err(EngineError::invalid_gguf(format!("tensor {name}: {cols} columns are not whole {block}-blocks")));
        }
        Ok((rows, cols, cols / block * info.ggml_dtype.type_size()))
    }

    fn data(&self, info: &TensorInfo, at: usize, len: usize, name: &str) -> EngineResult<&[u8]> {
        let all = (*self.bytes).as_ref();
        let start = self.content.tensor_data_offset as usize + info.offset as usize + at;
        all.get(start..start + len).ok_or_else(|| EngineError::invalid_gguf(format!("tensor {name} runs past the end of the file")))
    }

    /// Output rows `rows` of a matrix, all columns.
    pub fn rows(&mut self, name: &str, rows: Range<usize>) -> EngineResult<QTensor> {
        let info = self.info_of(name)?;
        let (total, cols, row_bytes) = Self::layout(&info, name)?;
        if rows.end > total || rows.start >= rows.end {
            return Err(EngineError::internal(format!("rows {rows:?} of tensor {name} with {total} rows")));
        }
        let raw = self.data(&info, rows.start * row_bytes, rows.len() * row_bytes, name)?.to_vec();
        self.copied += raw.len();
        Ok(qtensor_from_ggml(info.ggml_dtype, &raw, vec![rows.len(), cols], &Device::Cpu)?)
    }

    /// Input columns `cols` of every row of a matrix; `cols` must fall on block boundaries.
    pub fn columns(&mut self, name: &str, cols: Range<usize>) -> EngineResult<QTensor> {
        let info = self.info_of(name)?;
        let (rows, total, row_bytes) = Self::layout(&info, name)?;
        let block = info.ggml_dtype.block_size();
        if cols.end > total || cols.start >= cols.end || !cols.start.is_multiple_of(block) || !cols.end.is_multiple_of(block) {
            return Err(EngineError::internal(format!("columns {cols:?} of tensor {name} ({total} columns, {block}-blocks)")));
        }
        let (from, len) = (cols.start / block * info.ggml_dtype.type_size(), cols.len() / block * info.ggml_dtype.type_size());
        let all = self.data(&info, 0, rows * row_bytes, name)?;
        let mut raw = Vec::with_capacity(rows * len);
        for row in all.chunks_exact(row_bytes) {
            raw.extend_from_slice(&row[from..from + len]);
        }
        self.copied += raw.len();
        Ok(qtensor_from_ggml(info.ggml_dtype, &raw, vec![rows, cols.len()], &Device::Cpu)?)
    }

    /// A whole tensor (norm weights, biases) as f32.
    pub fn vector(&mut self, name: &str) -> EngineResult<Vec<f32>> {
        let info = self.info_of(name)?;
        let (rows, _, row_bytes) = Self::layout(&info, name)?;
        let raw = self.data(&info, 0, rows * row_bytes, name)?.to_vec();
        self.copied += raw.len();
        let tensor = qtensor_from_ggml(info.ggml_dtype, &raw, info.shape.dims().to_vec(), &Device::Cpu)?;
        Ok(tensor.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?)
    }

    pub fn optional_vector(&mut self, name: &str) -> EngineResult<Option<Vec<f32>>> {
        if self.has(name) {
            self.vector(name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The full output-row count of a matrix.
    pub fn out_features(&self, name: &str) -> EngineResult<usize> {
        Ok(self.info(name)?.shape.dims()[0])
    }
}
