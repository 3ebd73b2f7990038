//! Starting a rank: the coordinator's model (rank 0, driven by the engine like any decoder) and a
//! shard's (loaded, listening on the endpoint the hive gave it, then serving its coordinator's
//! steps until the group ends). Both read only their slices of the file.

use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::error::{EngineError, EngineResult};
use crate::model::config::Config;

use super::comm::{loopback_endpoint, Communicator};
use super::source::SlicedGguf;
use super::transformer::{fingerprint, Role, ShardedTransformer};

/// How long a collective may wait by default: a killed rank is seen at once (its sockets
/// close), so this bounds only a rank that is alive but stuck, and leaves room for a loaded CPU.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the ranks wait for each other to load and join.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);

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
            let print = fingerprint(&config, &src, world, context_size);
            let mut model = ShardedTransformer::load(config, &mut src, Role::Rank { rank: 0, world }, context_size, progress)?;
            model.attach(Communicator::connect(shards, secret, print, *timeout, *wait)?)?;
            Ok(model)
        }
    }
}

#[derive(Debug, Clone)]
pub struct ShardOptions {
    pub path: String,
    pub rank: usize,
    pub world: usize,
    pub endpoint: String,
    pub secret: String,
    pub context_size: Option<usize>,
    pub timeout: Duration,
    pub wait: Duration,
}

/// A shard loaded and listening, not yet joined.
pub struct OpenShard {
    model: ShardedTransformer,
    listener: TcpListener,
    fingerprint: u64,
    options: ShardOptions,
    pub weight_bytes: usize,
    pub cache_bytes: usize,
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
    let mut src = SlicedGguf::open(Path::new(&options.path))?;
    let config = Config::from_gguf(&src.content.metadata, &src.content.tensor_infos)?;
    // The coordinator's formula (engine.rs): the same spec gives the same cache on every rank.
    let context_size = options.context_size.filter(|c| *c > 0).unwrap_or(config.train_context.min(4096));
    let print = fingerprint(&config, &src, options.world, context_size);
    let model = ShardedTransformer::load(config, &mut src, Role::Rank { rank: options.rank, world: options.world }, context_size, progress)?;
    let listener =
        TcpListener::bind(addr).map_err(|e| EngineError::invalid_request(format!("shard {}: cannot listen on {}: {e}", options.rank, options.endpoint)))?;
    Ok(OpenShard { weight_bytes: model.weight_bytes, cache_bytes: model.cache_bytes(), model, listener, fingerprint: print, options })
}

impl OpenShard {
    /// Waits for the coordinator, then runs its steps until it closes the group (Ok) or the
    /// group fails (Err: a rank gone, a collective past its deadline).
    pub fn serve(mut self, cancel: &AtomicBool) -> EngineResult<()> {
        let o = &self.options;
        let comm = Communicator::accept(&self.listener, o.rank, o.world, &o.secret, self.fingerprint, o.timeout, o.wait, cancel)?;
        drop(self.listener);
        self.model.attach(comm)?;
        self.model.serve()
    }
}
