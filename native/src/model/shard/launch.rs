//! Starting a rank: the coordinator's model (rank 0, driven by the engine like any decoder) and a
//! shard's (loaded, listening on the endpoint the hive gave it, then serving its coordinator's
//! steps until the group ends). Both read only their slices of the file. On the CPU a rank runs
//! the ggml path (transformer.rs); on a CUDA device the graph decoder's rank (graph/tp.rs), one
//! GPU each, joined over the same authenticated loopback links.

use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use candle_core::Device;

use crate::error::{EngineError, EngineResult};
use crate::model::config::Config;
#[cfg(feature = "cuda")]
use crate::model::graph::GraphDecoder;

use super::comm::{loopback_endpoint, Communicator};
#[cfg(feature = "cuda")]
use super::plan::ShardPlan;
use super::source::SlicedGguf;
use super::transformer::{fingerprint, Role, ShardedTransformer};

/// How long a collective may wait by default: a killed rank is seen at once (its sockets
/// close), so this bounds only a rank that is alive but stuck, and leaves room for a loaded CPU.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the ranks wait for each other to load and join.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// The engine name in the group fingerprint of CPU ranks.
pub const GGML: &str = "ggml";

/// The engine name in the group fingerprint of GPU ranks: the graph path at `slots` streams
/// (every rank captures the same batch buckets).
pub fn graph_engine(slots: usize) -> String {
    format!("graph|{slots}")
}

#[derive(Debug, Clone)]
pub enum TensorParallel {
    /// Rank 0 of a group: drives the shards at `shards` (shard r at index r - 1).
    Coordinator { shards: Vec<String>, secret: String, timeout: Duration, wait: Duration },
    /// One process computing what a group of `blocks` ranks computes, to the bit.
    Reference { blocks: usize },
}

pub fn load_coordinator(
    tp: &TensorParallel,
    path: &Path,
    config: Config,
    context_size: usize,
    progress: &mut dyn FnMut(f64),
) -> EngineResult<ShardedTransformer> {
    let mut src = SlicedGguf::open(path)?;
    match tp {
        TensorParallel::Reference { blocks } => ShardedTransformer::load(config, &mut src, Role::Single { blocks: *blocks }, context_size, progress),
        TensorParallel::Coordinator { shards, secret, timeout, wait } => {
            let world = shards.len() + 1;
            for endpoint in shards {
                loopback_endpoint(endpoint)?;
            }
            let print = fingerprint(&config, &src.content, world, context_size, GGML);
            let mut model = ShardedTransformer::load(config, &mut src, Role::Rank { rank: 0, world }, context_size, progress)?;
            model.attach(Communicator::connect(shards, secret, print, *timeout, *wait)?)?;
            Ok(model)
        }
    }
}

/// Rank 0 of a group on a CUDA device: the graph decoder's slice, joined with its shards
/// (which load and listen first), ready to step.
#[cfg(feature = "cuda")]
#[allow(clippy::too_many_arguments)]
pub fn load_graph_coordinator(
    tp: &TensorParallel,
    path: &Path,
    config: Config,
    device: &Device,
    context_size: usize,
    slots: usize,
    progress: &mut dyn FnMut(f64),
) -> EngineResult<GraphDecoder> {
    let TensorParallel::Coordinator { shards, secret, timeout, wait } = tp else {
        return Err(EngineError::invalid_request("a one-process reference of a group (tensorParallel.blocks) runs on the CPU only"));
    };
    let world = shards.len() + 1;
    for endpoint in shards {
        loopback_endpoint(endpoint)?;
    }
    let mut file = crate::gguf::open(path)?;
    let plan = ShardPlan::new(&config, &file.content.tensor_infos, 0, world)?;
    let print = fingerprint(&config, &file.content, world, context_size, &graph_engine(slots));
    let mut decoder = GraphDecoder::load(config, &file.content, &mut file.reader, device, context_size, slots, Some((plan, *timeout)), progress)?;
    decoder.join(Communicator::connect(shards, secret, print, *timeout, *wait)?)?;
    Ok(decoder)
}

#[derive(Debug, Clone)]
pub struct ShardOptions {
    pub path: String,
    pub rank: usize,
    pub world: usize,
    pub endpoint: String,
    pub secret: String,
    pub context_size: Option<usize>,
    /// "cpu" (the ggml path) or "cuda:N" (the graph path on that GPU).
    pub device: String,
    /// Streams the coordinator serves (the graph path's slots; its graphs must be the coordinator's).
    pub parallel: usize,
    pub timeout: Duration,
    pub wait: Duration,
}

enum ShardModel {
    Ggml(Box<ShardedTransformer>),
    #[cfg(feature = "cuda")]
    Graph(Box<GraphDecoder>),
}

/// A shard loaded and listening, not yet joined.
pub struct OpenShard {
    model: ShardModel,
    listener: TcpListener,
    fingerprint: u64,
    options: ShardOptions,
    pub weight_bytes: usize,
    pub cache_bytes: usize,
    /// Where the rank computes (its GPU's memory goes in the shard's heartbeat).
    pub device: Device,
}

pub fn open_shard(options: ShardOptions, progress: &mut dyn FnMut(f64)) -> EngineResult<OpenShard> {
    if options.rank == 0 || options.rank >= options.world {
        return Err(EngineError::invalid_request(format!(
            "shard rank {} of {}: shards are ranks 1 to {}",
            options.rank,
            options.world,
            options.world.max(2) - 1
        )));
    }
    let addr = loopback_endpoint(&options.endpoint)?;
    let device = crate::engine::parse_device(&options.device)?;
    let path = Path::new(&options.path);
    let (model, print, weight_bytes, cache_bytes) = if device.is_cpu() {
        let mut src = SlicedGguf::open(path)?;
        let config = Config::from_gguf(&src.content.metadata, &src.content.tensor_infos)?;
        let context_size = shard_context(&options, &config);
        let print = fingerprint(&config, &src.content, options.world, context_size, GGML);
        let model = ShardedTransformer::load(config, &mut src, Role::Rank { rank: options.rank, world: options.world }, context_size, progress)?;
        let (weights, cache) = (model.weight_bytes, model.cache_bytes());
        (ShardModel::Ggml(Box::new(model)), print, weights, cache)
    } else {
        open_graph_shard(&options, &device, progress)?
    };
    let listener =
        TcpListener::bind(addr).map_err(|e| EngineError::invalid_request(format!("shard {}: cannot listen on {}: {e}", options.rank, options.endpoint)))?;
    Ok(OpenShard { weight_bytes, cache_bytes, device, model, listener, fingerprint: print, options })
}

/// The coordinator's formula (engine.rs): the same spec gives the same cache on every rank.
fn shard_context(options: &ShardOptions, config: &Config) -> usize {
    options.context_size.filter(|c| *c > 0).unwrap_or(config.train_context.min(4096))
}

#[cfg(feature = "cuda")]
fn open_graph_shard(options: &ShardOptions, device: &Device, progress: &mut dyn FnMut(f64)) -> EngineResult<(ShardModel, u64, usize, usize)> {
    let mut file = crate::gguf::open(Path::new(&options.path))?;
    let config = Config::from_gguf(&file.content.metadata, &file.content.tensor_infos)?;
    let context_size = shard_context(options, &config);
    let slots = options.parallel.max(1);
    let print = fingerprint(&config, &file.content, options.world, context_size, &graph_engine(slots));
    let plan = ShardPlan::new(&config, &file.content.tensor_infos, options.rank, options.world)?;
    let decoder = GraphDecoder::load(config, &file.content, &mut file.reader, device, context_size, slots, Some((plan, options.timeout)), progress)?;
    let (weights, cache) = (decoder.weight_bytes, decoder.cache_bytes());
    Ok((ShardModel::Graph(Box::new(decoder)), print, weights, cache))
}

#[cfg(not(feature = "cuda"))]
fn open_graph_shard(options: &ShardOptions, _device: &Device, _progress: &mut dyn FnMut(f64)) -> EngineResult<(ShardModel, u64, usize, usize)> {
    Err(EngineError::new(crate::error::ErrorCode::DeviceUnavailable, format!("shard {}: device {} needs a CUDA build", options.rank, options.device)))
}

impl OpenShard {
    /// Waits for the coordinator, then runs its steps until it closes the group (Ok) or the
    /// group fails (Err: a rank gone, a collective past its deadline).
    pub fn serve(self, cancel: &AtomicBool) -> EngineResult<()> {
        let o = &self.options;
        let comm = Communicator::accept(&self.listener, o.rank, o.world, &o.secret, self.fingerprint, o.timeout, o.wait, cancel)?;
        drop(self.listener);
        match self.model {
            ShardModel::Ggml(mut model) => {
                model.attach(comm)?;
                model.serve()
            }
            #[cfg(feature = "cuda")]
            ShardModel::Graph(mut decoder) => {
                decoder.join(comm)?;
                decoder.serve_launches()
            }
        }
    }
}
