//! Opening a GGUF: the header and metadata through Candle's reader, checked against the file's
//! real size so that a truncated download is an `invalid_gguf` error at load, not a panic or a
//! short read halfway through the tensors.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};

use crate::error::{EngineError, EngineResult, ErrorCode};

pub struct GgufFile {
    pub content: Content,
    pub reader: BufReader<File>,
    pub file_size: u64,
}

pub fn open(path: &Path) -> EngineResult<GgufFile> {
    let file = File::open(path).map_err(|error| {
        let code = if error.kind() == std::io::ErrorKind::NotFound { ErrorCode::FileNotFound } else { ErrorCode::InvalidGguf };
        EngineError::new(code, format!("cannot open {}: {error}", path.display()))
    })?;
    let file_size = file.metadata().map_err(|e| EngineError::invalid_gguf(format!("cannot stat {}: {e}", path.display())))?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let content = Content::read(&mut reader).map_err(|e| EngineError::invalid_gguf(format!("{} is not a readable GGUF file: {e}", path.display())))?;
    for (name, info) in &content.tensor_infos {
        let elements = info.shape.elem_count();
        let block = info.ggml_dtype.block_size();
        if elements % block != 0 {
            return Err(EngineError::invalid_gguf(format!("tensor {name}: {elements} elements is not a multiple of the block size {block}")));
        }
        let bytes = (elements / block * info.ggml_dtype.type_size()) as u64;
        let end = content.tensor_data_offset.saturating_add(info.offset).saturating_add(bytes);
        if end > file_size {
            return Err(EngineError::invalid_gguf(format!(
                "{} is truncated: tensor {name} ends at byte {end}, the file has {file_size} bytes",
                path.display()
            )));
        }
    }
    Ok(GgufFile { content, reader, file_size })
}

/// Typed access to the metadata, with errors that name the key.
pub struct Metadata<'a>(pub &'a HashMap<String, Value>);

fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::U8(v) => Some(*v as u64),
        Value::I8(v) if *v >= 0 => Some(*v as u64),
        Value::U16(v) => Some(*v as u64),
        Value::I16(v) if *v >= 0 => Some(*v as u64),
        Value::U32(v) => Some(*v as u64),
        Value::I32(v) if *v >= 0 => Some(*v as u64),
        Value::U64(v) => Some(*v),
        Value::I64(v) if *v >= 0 => Some(*v as u64),
        _ => None,
    }
}

fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::F32(v) => Some(*v as f64),
        Value::F64(v) => Some(*v),
        other => as_u64(other).map(|v| v as f64),
    }
}

impl<'a> Metadata<'a> {
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.0.get(key)
    }

    pub fn string(&self, key: &str) -> Option<&'a str> {
        match self.0.get(key) {
            Some(Value::String(s)) => Some(s.as_str()),
            _ => None,
        }
    }

    pub fn u64_opt(&self, key: &str) -> EngineResult<Option<u64>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(value) => as_u64(value).map(Some).ok_or_else(|| EngineError::invalid_gguf(format!("metadata {key} is not an unsigned integer: {value:?}"))),
        }
    }

    pub fn u64(&self, key: &str) -> EngineResult<u64> {
        self.u64_opt(key)?.ok_or_else(|| EngineError::invalid_gguf(format!("metadata {key} is missing")))
    }

    pub fn usize(&self, key: &str) -> EngineResult<usize> {
        Ok(self.u64(key)? as usize)
    }

    /// Per-layer values (`head_count_kv` may be an array in some GGUFs): the first element.
    pub fn usize_or_first(&self, key: &str) -> EngineResult<Option<usize>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Array(values)) => Ok(values.first().and_then(as_u64).map(|v| v as usize)),
            Some(value) => {
                as_u64(value).map(|v| Some(v as usize)).ok_or_else(|| EngineError::invalid_gguf(format!("metadata {key} is not an unsigned integer")))
            }
        }
    }

    pub fn f64_opt(&self, key: &str) -> EngineResult<Option<f64>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(value) => as_f64(value).map(Some).ok_or_else(|| EngineError::invalid_gguf(format!("metadata {key} is not a number: {value:?}"))),
        }
    }

    pub fn bool_opt(&self, key: &str) -> Option<bool> {
        match self.0.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            Some(value) => as_u64(value).map(|v| v != 0),
            None => None,
        }
    }

    pub fn array(&self, key: &str) -> EngineResult<Option<&'a Vec<Value>>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Array(values)) => Ok(Some(values)),
            Some(_) => Err(EngineError::invalid_gguf(format!("metadata {key} is not an array"))),
        }
    }

    pub fn strings(&self, key: &str) -> EngineResult<Option<Vec<String>>> {
        let Some(values) = self.array(key)? else { return Ok(None) };
        values
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(EngineError::invalid_gguf(format!("metadata {key} holds a non-string: {other:?}"))),
            })
            .collect::<EngineResult<Vec<_>>>()
            .map(Some)
    }

    pub fn f32s(&self, key: &str) -> EngineResult<Option<Vec<f32>>> {
        let Some(values) = self.array(key)? else { return Ok(None) };
        values
            .iter()
            .map(|v| as_f64(v).map(|x| x as f32).ok_or_else(|| EngineError::invalid_gguf(format!("metadata {key} holds a non-number"))))
            .collect::<EngineResult<Vec<_>>>()
            .map(Some)
    }

    pub fn i64s(&self, key: &str) -> EngineResult<Option<Vec<i64>>> {
        let Some(values) = self.array(key)? else { return Ok(None) };
        values
            .iter()
            .map(|v| match v {
                Value::I32(x) => Ok(*x as i64),
                Value::I64(x) => Ok(*x),
                Value::U32(x) => Ok(*x as i64),
                Value::U8(x) => Ok(*x as i64),
                Value::I8(x) => Ok(*x as i64),
                Value::U16(x) => Ok(*x as i64),
                Value::I16(x) => Ok(*x as i64),
                Value::U64(x) => Ok(*x as i64),
                other => Err(EngineError::invalid_gguf(format!("metadata {key} holds a non-integer: {other:?}"))),
            })
            .collect::<EngineResult<Vec<_>>>()
            .map(Some)
    }
}
