//! The graph decoder as one rank of a tensor-parallel group (issue 14): one process per GPU, each
//! holding its slice of every matrix (shard::plan: whole heads, feed-forward rows, vocabulary
//! rows), running the same captured step on the same token ids.
//!
//! Per layer, the O and the down projections write this rank's part into its exchange buffer
//! and one `rbee_tp_reduce` adds every rank's part to the residual, in rank order (kernels/tp.cu:
//! the peers' buffers are mapped here through CUDA IPC, so the exchange is one kernel inside the
//! graph, no host round trip). The head gives each rank the best (value, id) of its vocabulary
//! slice and `rbee_tp_argmax` picks the group's token on rank 0. Rank 0 (the coordinator) owns
//! the engine, its batching and sampling; before each replay it sends the shards the replay's
//! input and sequence number (shard::comm's Launch), and the shards replay the same graph.
//!
//! Prompts go through the decode graphs in rows of the largest bucket (no GEMM prefill in a
//! group yet). Every exchange waits at most the group's timeout (capped at KERNEL_WAIT_CAP: a
//! spinning GPU holds its host thread): a rank that is gone or stuck fails the step, and every
//! later one, on every rank that waits for it. Rank 0 fails at once when a shard's process ends:
//! a thread per shard link raises the abort word the exchange kernels poll.

use std::sync::Arc;
use std::time::Duration;

use candle_core::cuda_backend::cudarc::driver::{result, CudaContext};

use super::exchange::{Exchange, HANDLE_BYTES};
use super::memory::{DeviceArena, DeviceBuffer};
use super::plan::{self, TpLayout};
use super::{cu, param, GraphDecoder};
use crate::error::{EngineError, EngineResult};
use crate::model::graph::args::{TpArgs, TP_MAX_WORLD};
use crate::model::shard::comm::{Communicator, Launch};
use crate::model::shard::plan::{share, ShardPlan};

/// tp.cu's kernels.
pub(super) const TP_KERNELS: [&str; 2] = ["rbee_tp_reduce", "rbee_tp_argmax"];

/// The longest an exchange kernel waits, whatever the group's timeout.
const KERNEL_WAIT_CAP: Duration = Duration::from_secs(30);

pub(super) struct TpRank {
    /// The links to the other ranks (None until `join`). Before `exchange`: dropped first, so the
    /// shards hear the group close before this rank's buffer, which they map, is freed.
    comm: Option<Communicator>,
    plan: ShardPlan,
    exchange: Exchange,
    /// Host-mapped: raised (rank 0) when a shard's link closes; the exchange kernels poll it.
    abort: Arc<DeviceBuffer>,
    /// The last launch's sequence number: the coordinator's count, on every rank.
    seq: u64,
    /// Where the exchange kernels read it.
    seq_buf: DeviceBuffer,
    timeout: Duration,
}

fn group_error(message: String) -> EngineError {
    EngineError::internal(format!("tensor-parallel group: {message}"))
}

impl TpRank {
    pub(super) fn new(ctx: &Arc<CudaContext>, mem: &Arc<DeviceArena>, plan: ShardPlan, layout: TpLayout, timeout: Duration) -> EngineResult<Self> {
        if plan.world > TP_MAX_WORLD {
            return Err(EngineError::invalid_request(format!("a tensor-parallel group of {} GPUs: at most {TP_MAX_WORLD}", plan.world)));
        }
        let exchange = Exchange::new(ctx, layout, plan.rank)?;
        let abort = Arc::new(DeviceBuffer::host_mapped(ctx, &[0u8; 4])?);
        Ok(Self { comm: None, plan, exchange, abort, seq: 0, seq_buf: mem.zeroed(8)?, timeout })
    }

    /// Where the exchange kernels flag a wait that gave up (TpLayout::ERROR).
    pub(super) fn error_word(&self) -> u64 {
        self.exchange.own(TpLayout::ERROR)
    }
}

impl GraphDecoder {
    /// Joins the group over `comm` (rank 0's links to the shards, or a shard's to rank 0): every
    /// rank's exchange buffer handle to every rank, the peers' buffers mapped, the graphs captured
    /// (their exchange kernels hold the peers' addresses), then every rank's word that it is ready,
    /// so that no rank starts a step a peer cannot run: a rank that failed fails every rank's join.
    pub fn join(&mut self, mut comm: Communicator) -> EngineResult<()> {
        let tp = self.tp.as_mut().ok_or_else(|| EngineError::internal("join: this decoder is not a rank of a tensor-parallel group"))?;
        if comm.rank != tp.plan.rank || comm.world != tp.plan.world {
            return Err(group_error(format!("rank {} of {} was joined as rank {} of {}", tp.plan.rank, tp.plan.world, comm.rank, comm.world)));
        }
        let layout_bytes = tp.exchange.layout.bytes() as u64;
        let mut hello = tp.exchange.handle()?;
        hello.extend_from_slice(&layout_bytes.to_le_bytes());
        let all = comm.all_gather_bytes(&hello, "exchange handles")?;
        let mut handles = Vec::with_capacity(all.len());
        for (rank, message) in all.iter().enumerate() {
            let bytes = message.get(HANDLE_BYTES..).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes);
            if message.len() != HANDLE_BYTES + 8 || bytes != Some(layout_bytes) {
                return Err(group_error(format!("rank {rank} lays out its exchange buffer differently (another batch size or model?)")));
            }
            handles.push(message[..HANDLE_BYTES].to_vec());
        }
        let opened = tp.exchange.open(&handles);
        let ready = opened.and_then(|()| self.capture_all());
        let word = match &ready {
            Ok(()) => vec![0u8],
            Err(error) => [vec![1u8], error.message.as_bytes().to_vec()].concat(),
        };
        let words = comm.all_gather_bytes(&word, "ready")?;
        ready?;
        if let Some((rank, word)) = words.iter().enumerate().find(|(_, word)| word.first() != Some(&0)) {
            return Err(group_error(format!("rank {rank} could not join: {}", String::from_utf8_lossy(word.get(1..).unwrap_or_default()))));
        }
        let tp = self.tp.as_mut().ok_or_else(|| EngineError::internal("join: no rank"))?;
        if comm.rank == 0 {
            watch_shards(&comm, &tp.abort)?;
        }
        tp.comm = Some(comm);
        Ok(())
    }

    fn tp_args(&self, tp: &TpRank, index: usize) -> TpArgs {
        let world = tp.plan.world;
        let mut args = TpArgs {
            err: tp.error_word(),
            abort: tp.abort.ptr,
            seq: tp.seq_buf.ptr,
            timeout_ns: i64::try_from(tp.timeout.min(KERNEL_WAIT_CAP).as_nanos()).unwrap_or(i64::MAX),
            world: world as i32,
            rank: tp.plan.rank as i32,
            index: index as i32,
            per_launch: plan::tp_exchanges(self.config.n_layer) as i32,
            ..Default::default()
        };
        for r in 0..world {
            args.counter[r] = tp.exchange.at(r, TpLayout::COUNTER);
        }
        args
    }

    /// In a group: where this rank's part of exchange `index` goes (its exchange buffer, no
    /// residual read), as an mmvq segment's (out, res). None alone.
    pub(super) fn tp_part(&self, index: usize) -> Option<(u64, u64)> {
        self.tp.as_ref().map(|tp| (tp.exchange.own(tp.exchange.layout.part(index)), 0))
    }

    /// In a group, after exchange `index`'s products: `dst` (rows x n_embd) = (`add` ? dst : 0)
    /// + every rank's part, added in rank order. Returns the launches (none alone).
    pub(super) fn tp_reduce(&self, rows: usize, index: usize, dst: u64, add: bool) -> EngineResult<usize> {
        let Some(tp) = &self.tp else { return Ok(0) };
        let n = rows * self.config.n_embd;
        let mut args = self.tp_args(tp, index);
        let offset = tp.exchange.layout.part(index);
        for r in 0..tp.plan.world {
            args.part[r] = tp.exchange.at(r, offset);
        }
        args.dst = dst;
        args.add = i32::from(add);
        args.n = n as i32;
        self.launch("rbee_tp_reduce", (n.div_ceil(256).min(32) as u32, 1, 1), 256, 0, &args)?;
        Ok(1)
    }

    /// A rank's head, after the final norm: its vocabulary rows' logits into its exchange
    /// buffer and their best (value, id) per row, then the group's greedy token of each row on
    /// rank 0 (its position advanced), as the single-GPU head picks it. Returns the launches.
    pub(super) fn tp_head(&self, rows: usize) -> EngineResult<usize> {
        let tp = self.tp.as_ref().ok_or_else(|| EngineError::internal("tp_head outside a group"))?;
        let (b, layout) = (&self.buffers, tp.exchange.layout);
        let logits = tp.exchange.own(layout.logits());
        let (grid, launches) = self.mmvq(
            rows,
            &[(self.head(), logits, 0, layout.vocab_ld as i32, 0)],
            b.xq.ptr,
            b.xds.ptr,
            self.config.n_embd,
            Some((b.argmax_val.ptr, b.argmax_idx.ptr)),
        )?;
        let (mut val, mut idx, mut nparts, mut ld) = (b.argmax_val.ptr, b.argmax_idx.ptr, grid as i32, grid as i32);
        let (mut token, mut best, mut no_pos) = (tp.exchange.own(layout.best_idx()), tp.exchange.own(layout.best_val()), 0u64);
        let mut params = [param(&mut val), param(&mut idx), param(&mut nparts), param(&mut ld), param(&mut token), param(&mut best), param(&mut no_pos)];
        // SAFETY: rbee_argmax_final(const float*, const int*, int, int, int*, float*, int*).
        unsafe { self.launch_params("rbee_argmax_final", (rows as u32, 1, 1), 256, 0, &mut params)? };
        let world = tp.plan.world;
        let mut args = self.tp_args(tp, plan::tp_exchanges(self.config.n_layer) - 1);
        for r in 0..world {
            args.part[r] = tp.exchange.at(r, layout.best_val());
            args.part_idx[r] = tp.exchange.at(r, layout.best_idx());
            args.off[r] = share(self.config.n_vocab, r, world).start as i32;
        }
        args.token = b.tokens.ptr;
        args.pos = b.pos.ptr;
        args.rows = rows as i32;
        self.launch("rbee_tp_argmax", (rows as u32, 1, 1), 32, 0, &args)?;
        Ok(launches + 2)
    }

    /// Rank 0, before a replay: numbers it, writes the number where the exchange kernels read
    /// it, and sends the shards the replay (`input` as the decode buffers get it).
    pub(super) fn tp_send_launch(&mut self, bucket: usize, input: &[i32]) -> EngineResult<()> {
        let stream = self.stream.cu_stream();
        let tp = self.tp.as_mut().ok_or_else(|| EngineError::internal("tp_send_launch outside a group"))?;
        let comm = tp.comm.as_mut().ok_or_else(|| group_error("the group has not joined".to_string()))?;
        if comm.rank != 0 {
            return Err(EngineError::internal("a shard replays its coordinator's launches, it starts none"));
        }
        tp.seq += 1;
        let seq = [tp.seq];
        cu("sequence in", unsafe { result::memcpy_htod_async(tp.seq_buf.ptr, &seq[..], stream) })?;
        comm.send_launch(&Launch { seq: tp.seq, bucket, input: input.to_vec() })
    }

    /// Rank 0: row `row`'s logits of the last replay, every rank's slice read from its exchange buffer.
    pub(super) fn tp_logits_out(&self, row: usize, values: &mut [f32]) -> EngineResult<()> {
        let tp = self.tp.as_ref().ok_or_else(|| EngineError::internal("tp_logits_out outside a group"))?;
        let (stream, layout, world) = (self.stream.cu_stream(), tp.exchange.layout, tp.plan.world);
        for r in 0..world {
            let slice = share(self.config.n_vocab, r, world);
            let from = tp.exchange.at(r, layout.logits() + 4 * row * layout.vocab_ld);
            cu("logits out", unsafe { result::memcpy_dtoh_async(&mut values[slice], from, stream) })?;
        }
        Ok(())
    }

    /// The error word read after a replay: non-zero when one of its exchanges gave up waiting.
    pub(super) fn tp_check(&self, error: i32) -> EngineResult<()> {
        match &self.tp {
            Some(tp) if error != 0 => Err(group_error(format!(
                "rank {} gave up waiting for another rank's part of an exchange (a shard's link closed, or more than {} ms): a rank is gone or stuck",
                tp.plan.rank,
                tp.timeout.min(KERNEL_WAIT_CAP).as_millis()
            ))),
            _ => Ok(()),
        }
    }

    /// A shard: replays its coordinator's launches until the coordinator closes the group (Ok),
    /// or until the group fails (a rank gone, an exchange past its timeout, a launch it cannot run).
    pub fn serve_launches(&mut self) -> EngineResult<()> {
        loop {
            let tp = self.tp.as_mut().ok_or_else(|| EngineError::internal("serve_launches outside a group"))?;
            let comm = tp.comm.as_mut().ok_or_else(|| group_error("the group has not joined".to_string()))?;
            if comm.rank == 0 {
                return Err(EngineError::internal("the coordinator starts launches, it does not serve them"));
            }
            match comm.receive_launch()? {
                Some(launch) => self.replay(&launch)?,
                None => return Ok(()),
            }
        }
    }

    /// One of the coordinator's launches, checked first: a launch this shard cannot run safely
    /// (a batch it has no graph for, a token, position or slot out of range) fails the group.
    fn replay(&mut self, launch: &Launch) -> EngineResult<()> {
        let bucket = launch.bucket;
        if !self.graphs.contains_key(&bucket) {
            return Err(group_error(format!("the coordinator launched a batch of {bucket} rows, which this shard has no graph for (a different --parallel?)")));
        }
        let (tokens, rest) = launch.input.split_at(bucket);
        let (positions, slots) = rest.split_at(bucket);
        let fits = |values: &[i32], limit: usize| values.iter().all(|&v| v >= 0 && (v as usize) < limit);
        if !fits(tokens, self.config.n_vocab) || !fits(positions, self.capacity) || !fits(slots, self.slots) {
            return Err(group_error("the coordinator sent a token, position or slot out of this shard's range".to_string()));
        }
        let stream = self.stream.cu_stream();
        let tp = self.tp.as_mut().ok_or_else(|| EngineError::internal("replay outside a group"))?;
        if launch.seq <= tp.seq {
            return Err(group_error(format!("launch {} after launch {}: the coordinator's launches are out of order", launch.seq, tp.seq)));
        }
        tp.seq = launch.seq;
        let seq = [tp.seq];
        let error_word = tp.error_word();
        cu("bind", self.ctx.bind_to_thread())?;
        self.input_in(bucket, &launch.input)?;
        cu("sequence in", unsafe { result::memcpy_htod_async(self.tp.as_ref().map_or(0, |t| t.seq_buf.ptr), &seq[..], stream) })?;
        let graph = self.graphs.get(&bucket).ok_or_else(|| EngineError::internal(format!("no decode graph for batch {bucket}")))?;
        cu("graph launch", graph.0.launch())?;
        let mut error = [0i32];
        cu("error word out", unsafe { result::memcpy_dtoh_async(&mut error[..], error_word, stream) })?;
        cu("sync", self.stream.synchronize())?;
        self.tp_check(error[0])
    }
}

/// Rank 0: a thread per shard link that raises `abort` when the link closes (the shard's process
/// ended, or the group closed), so the exchange kernels stop waiting for a rank that is gone.
fn watch_shards(comm: &Communicator, abort: &Arc<DeviceBuffer>) -> EngineResult<()> {
    for (index, mut link) in comm.watch_links()?.into_iter().enumerate() {
        let abort = abort.clone();
        std::thread::Builder::new()
            .name(format!("rbee-tp-watch-{}", index + 1))
            .spawn(move || {
                Communicator::wait_for_end(&mut link);
                if let Some(host) = abort.host_address() {
                    // SAFETY: `abort` (kept alive by this thread's Arc) is 4 bytes of page-locked host memory.
                    unsafe { std::ptr::write_volatile(host as *mut i32, 1) };
                }
            })
            .map_err(|e| group_error(format!("cannot start the thread that watches shard {}: {e}", index + 1)))?;
    }
    Ok(())
}
