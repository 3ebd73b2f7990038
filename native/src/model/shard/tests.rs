//! The split is exact: one process computing the model with 1 column block is the plain ggml
//! path bit for bit; a group of R ranks (threads here, each with its own communicator over
//! loopback TCP) is one process with R blocks bit for bit, logits and all, on every architecture
//! and quantization mix the in-memory GGUFs have.

use std::io::Cursor;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file::Content;
use candle_core::Device;

use super::comm::{Communicator, Launch, Step};
use super::launch::GGML;
use super::plan::ShardPlan;
use super::source::SlicedGguf;
use super::transformer::{fingerprint, Role, ShardedTransformer};
use crate::model::config::{Arch, Config};
use crate::model::tensor::tiny_gguf::{tiny_gguf, Dims, Matrices};
use crate::model::Transformer;
use crate::sampling::argmax;

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const CONTEXT: usize = 64;
static NEVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Splits at 2 and 4: whole heads (16 heads, 4 a rank at most), 2 KV heads (divided over 2,
/// replicated over 4), down's 1024 columns in 256-blocks at 4 ranks, an odd vocabulary.
const TP_TINY: Dims = Dims { n_layer: 3, n_embd: 256, n_head: 16, n_head_kv: 2, head_dim: 64, n_ff: 1024, n_vocab: 331, window: 5, global_every: 2 };

fn source(bytes: &Arc<Vec<u8>>) -> SlicedGguf {
    SlicedGguf::from_bytes(bytes.clone()).unwrap()
}

fn config_of(src: &SlicedGguf) -> Config {
    Config::from_gguf(&src.content.metadata, &src.content.tensor_infos).unwrap()
}

/// Prompt, then greedy decode: the logits of every step.
fn run(forward: &mut dyn FnMut(&[u32], usize) -> Vec<f32>, steps: usize) -> Vec<Vec<f32>> {
    let prompt = [2u32, 17, 250, 3, 99, 140, 7, 330, 12];
    let mut out = vec![forward(&prompt, 0)];
    for position in prompt.len()..prompt.len() + steps {
        let token = argmax(out.last().unwrap());
        out.push(forward(&[token], position));
    }
    out
}

fn single(bytes: &Arc<Vec<u8>>, blocks: usize) -> Vec<Vec<f32>> {
    let mut src = source(bytes);
    let config = config_of(&src);
    let mut model = ShardedTransformer::load(config, &mut src, Role::Single { blocks }, CONTEXT, &mut |_| {}).unwrap();
    run(&mut |t, s| model.forward(t, s).unwrap(), 6)
}

fn plain(bytes: &Arc<Vec<u8>>) -> Vec<Vec<f32>> {
    let mut cursor = Cursor::new(bytes.as_slice());
    let content = Content::read(&mut cursor).unwrap();
    let config = Config::from_gguf(&content.metadata, &content.tensor_infos).unwrap();
    let mut model = Transformer::load(config, &content, &mut cursor, &Device::Cpu, CONTEXT, 1, &mut |_| {}).unwrap();
    run(&mut |t, s| model.forward(t, s).unwrap(), 6)
}

/// Shards listening on loopback, each loading its slice and serving on its own thread.
fn spawn_shards(bytes: &Arc<Vec<u8>>, world: usize) -> (Vec<String>, Vec<std::thread::JoinHandle<Result<(), String>>>) {
    let mut endpoints = Vec::new();
    let mut handles = Vec::new();
    for rank in 1..world {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        endpoints.push(listener.local_addr().unwrap().to_string());
        let bytes = bytes.clone();
        handles.push(std::thread::spawn(move || {
            let mut src = source(&bytes);
            let config = config_of(&src);
            let print = fingerprint(&config, &src.content, world, CONTEXT, GGML);
            let mut model = ShardedTransformer::load(config, &mut src, Role::Rank { rank, world }, CONTEXT, &mut |_| {}).map_err(|e| e.message)?;
            let comm =
                Communicator::accept(&listener, rank, world, SECRET, print, Duration::from_secs(5), Duration::from_secs(30), &NEVER).map_err(|e| e.message)?;
            model.attach(comm).map_err(|e| e.message)?;
            model.serve().map_err(|e| e.message)
        }));
    }
    (endpoints, handles)
}

fn group(bytes: &Arc<Vec<u8>>, world: usize) -> Vec<Vec<f32>> {
    let (endpoints, handles) = spawn_shards(bytes, world);
    let mut src = source(bytes);
    let config = config_of(&src);
    let print = fingerprint(&config, &src.content, world, CONTEXT, GGML);
    let mut model = ShardedTransformer::load(config, &mut src, Role::Rank { rank: 0, world }, CONTEXT, &mut |_| {}).unwrap();
    model.attach(Communicator::connect(&endpoints, SECRET, print, Duration::from_secs(5), Duration::from_secs(30)).unwrap()).unwrap();
    let logits = run(&mut |t, s| model.forward(t, s).unwrap(), 6);
    drop(model);
    for handle in handles {
        handle.join().unwrap().unwrap();
    }
    logits
}

fn same_bits(a: &[Vec<f32>], b: &[Vec<f32>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()))
}

fn cases() -> Vec<(Arch, Matrices)> {
    vec![
        (Arch::Gemma3, Matrices::Gemma270M),
        (Arch::Gemma3, Matrices::Quantized),
        (Arch::Llama, Matrices::Quantized),
        (Arch::Qwen2, Matrices::Quantized),
        (Arch::Qwen3, Matrices::Quantized),
    ]
}

#[test]
fn one_block_is_the_plain_ggml_path_bit_for_bit() {
    for (arch, matrices) in cases() {
        let bytes = Arc::new(tiny_gguf(arch, TP_TINY, matrices, 7));
        assert!(same_bits(&single(&bytes, 1), &plain(&bytes)), "{arch:?} {matrices:?}");
    }
}

#[test]
fn a_group_is_one_process_with_as_many_blocks_bit_for_bit() {
    for (arch, matrices) in cases() {
        let bytes = Arc::new(tiny_gguf(arch, TP_TINY, matrices, 11));
        let reference_plain = plain(&bytes);
        for world in [2, 4] {
            let reference = single(&bytes, world);
            let split = group(&bytes, world);
            assert!(same_bits(&split, &reference), "{arch:?} {matrices:?} at {world} ranks");
            // Against the plain path only the row-parallel sums are reassociated: close, not equal.
            let worst = split.iter().flatten().zip(reference_plain.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-2, "{arch:?} {matrices:?} at {world}: {worst}");
        }
    }
}

/// Matrices of a type without a ggml kernel here (f32, f16, ...) go through Candle's gemm, whose
/// blocking depends on the matrix's shape: a rank's slice may round differently from the whole.
/// Close, but the exactness above is for the quantized types real GGUFs use.
#[test]
fn float_matrices_split_close_but_without_the_guarantee() {
    let bytes = Arc::new(tiny_gguf(Arch::Qwen3, TP_TINY, Matrices::Float, 13));
    assert!(same_bits(&single(&bytes, 1), &plain(&bytes)));
    let reference = single(&bytes, 2);
    let split = group(&bytes, 2);
    let worst = split.iter().flatten().zip(reference.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-3, "{worst}");
}

#[test]
fn each_rank_holds_only_its_slice() {
    let bytes = Arc::new(tiny_gguf(Arch::Llama, TP_TINY, Matrices::Quantized, 3));
    let mut whole = source(&bytes);
    let config = config_of(&whole);
    let one = ShardedTransformer::load(config.clone(), &mut whole, Role::Single { blocks: 1 }, CONTEXT, &mut |_| {}).unwrap();
    let plan = ShardPlan::new(&config, &whole.content.tensor_infos, 1, 4).unwrap();
    // 16 heads, 2 KV heads over 4 ranks: rank 1 has heads 4..8, which read KV head 0 (replicated).
    assert_eq!((plan.heads.clone(), plan.kv_heads.clone(), plan.ff.clone()), (4..8, 0..1, 256..512));
    assert_eq!(ShardPlan::new(&config, &whole.content.tensor_infos, 1, 2).unwrap().kv_heads, 1..2);
    // The slices a rank copies are about a quarter of the matrices (norms are whole on every rank).
    let (endpoints, handles) = spawn_shards(&bytes, 4);
    let mut src = source(&bytes);
    let print = fingerprint(&config, &src.content, 4, CONTEXT, GGML);
    let mut rank0 = ShardedTransformer::load(config, &mut src, Role::Rank { rank: 0, world: 4 }, CONTEXT, &mut |_| {}).unwrap();
    rank0.attach(Communicator::connect(&endpoints, SECRET, print, Duration::from_secs(5), Duration::from_secs(30)).unwrap()).unwrap();
    assert!(rank0.weight_bytes * 3 < one.weight_bytes, "{} of {}", rank0.weight_bytes, one.weight_bytes);
    assert!(rank0.cache_bytes() * 2 == one.cache_bytes(), "KV cache {} of {}", rank0.cache_bytes(), one.cache_bytes());
    drop(rank0);
    for handle in handles {
        handle.join().unwrap().unwrap();
    }
}

#[test]
fn splits_that_do_not_fit_are_refused_naming_the_tensor_and_shape() {
    let dims = Dims { n_head: 24, n_head_kv: 8, ..TP_TINY };
    let bytes = Arc::new(tiny_gguf(Arch::Llama, dims, Matrices::Quantized, 5));
    let src = source(&bytes);
    let config = config_of(&src);
    // 24 heads split over 3 ranks, but 8 KV heads do not.
    let error = ShardPlan::new(&config, &src.content.tensor_infos, 0, 3).unwrap_err();
    assert!(error.message.contains("blk.0.attn_k.weight of shape [512, 256]") && error.message.contains("8 KV heads"), "{}", error.message);
    // 16 heads over 3: not whole heads.
    let bytes = Arc::new(tiny_gguf(Arch::Llama, TP_TINY, Matrices::Quantized, 5));
    let src = source(&bytes);
    let config = config_of(&src);
    let error = ShardPlan::new(&config, &src.content.tensor_infos, 0, 3).unwrap_err();
    assert!(error.message.contains("blk.0.attn_q.weight") && error.message.contains("16 query heads"), "{}", error.message);
    // Q6_K down (256-blocks) with 1024 columns over 8 ranks: 128 columns a rank cut blocks apart.
    let error = ShardPlan::new(&config, &src.content.tensor_infos, 0, 8).unwrap_err();
    assert!(error.message.contains("ffn_down.weight of shape [256, 1024] (Q6K)") && error.message.contains("256-column"), "{}", error.message);
    assert_eq!(error.code, crate::error::ErrorCode::InvalidRequest);
}

fn pair(world: usize, timeout: Duration) -> (Communicator, Vec<Communicator>) {
    let listeners: Vec<TcpListener> = (1..world).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let endpoints: Vec<String> = listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    let shards: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| std::thread::spawn(move || Communicator::accept(&l, i + 1, world, SECRET, 42, timeout, Duration::from_secs(10), &NEVER).unwrap()))
        .collect();
    let root = Communicator::connect(&endpoints, SECRET, 42, timeout, Duration::from_secs(10)).unwrap();
    (root, shards.into_iter().map(|h| h.join().unwrap()).collect())
}

#[test]
fn collectives_add_in_rank_order_on_every_rank() {
    let (mut root, shards) = pair(3, Duration::from_secs(5));
    let workers: Vec<_> = shards
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                let step = c.receive_step().unwrap().unwrap();
                let mine = vec![c.rank as f32 * 1e-8, 1.0];
                (step, c.all_reduce_sum(&mine).unwrap(), c.gather(&[c.rank as f32]).unwrap(), c.receive_step().unwrap())
            })
        })
        .collect();
    root.send_step(&Step { tokens: vec![5, 6], start: 3 }).unwrap();
    let sum = root.all_reduce_sum(&[1.0, 1.0]).unwrap();
    let gathered = root.gather(&[0.0]).unwrap().unwrap();
    root.close();
    let expected = vec![(1.0f32 + 1e-8) + 2e-8, 3.0];
    assert_eq!(sum, expected);
    assert_eq!(gathered, vec![vec![0.0], vec![1.0], vec![2.0]]);
    for worker in workers {
        let (step, sum, gathered, end) = worker.join().unwrap();
        assert_eq!(step, Step { tokens: vec![5, 6], start: 3 });
        assert_eq!(sum, expected);
        assert_eq!(gathered, None);
        assert_eq!(end, None, "the coordinator closed the group");
    }
}

#[test]
fn a_dead_rank_fails_every_other_rank_within_a_second() {
    let (mut root, mut shards) = pair(3, Duration::from_secs(30));
    let dead = shards.pop().unwrap();
    let mut alive = shards.pop().unwrap();
    let started = Instant::now();
    let survivor = std::thread::spawn(move || {
        let result = alive.all_gather(&[1.0]);
        (result.map(|_| ()).map_err(|e| e.message), Instant::now())
    });
    drop(dead); // rank 2 dies (its socket closes, as a killed process's does)
    let error = root.all_gather(&[0.0]).unwrap_err();
    let root_done = Instant::now();
    let (survivor_result, survivor_done) = survivor.join().unwrap();
    assert!(error.message.contains("shard 2"), "{}", error.message);
    assert!(survivor_result.is_err(), "rank 1 must not complete a collective without rank 2");
    // Far below the 30 s deadline: the loss is seen, not waited out.
    assert!(root_done - started < Duration::from_secs(1) && survivor_done - started < Duration::from_secs(1));
    // Poisoned: the next collective fails at once.
    assert!(root.all_gather(&[0.0]).unwrap_err().message.contains("already failed"));
}

#[test]
fn a_silent_rank_times_the_collective_out() {
    let (mut root, shards) = pair(2, Duration::from_millis(300));
    let started = Instant::now();
    let error = root.all_gather(&[0.0]).unwrap_err();
    let waited = started.elapsed();
    assert!(error.message.contains("did not answer within 300 ms"), "{}", error.message);
    assert!(waited >= Duration::from_millis(290) && waited < Duration::from_secs(1), "{waited:?}");
    drop(shards);
}

#[test]
fn only_the_coordinator_with_the_secret_and_the_same_model_joins() {
    use std::io::Write;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let shard = std::thread::spawn(move || Communicator::accept(&listener, 1, 2, SECRET, 42, Duration::from_secs(5), Duration::from_secs(10), &NEVER));
    // A stranger: dropped, and the shard keeps waiting.
    let mut stranger = std::net::TcpStream::connect(&endpoint).unwrap();
    stranger.write_all(b"\x01\x10\x00\x00\x00GET / HTTP/1.1\r\n\r\n").unwrap();
    let wrong = Communicator::connect(std::slice::from_ref(&endpoint), "another-secret-of-16", 42, Duration::from_secs(1), Duration::from_secs(2));
    assert!(wrong.is_err());
    // The secret but another model: refused, on both sides, naming why.
    let error = Communicator::connect(std::slice::from_ref(&endpoint), SECRET, 43, Duration::from_secs(1), Duration::from_secs(5)).map(|_| ()).unwrap_err();
    assert!(error.message.contains("different model"), "{}", error.message);
    assert!(shard.join().unwrap().map(|_| ()).unwrap_err().message.contains("different model"));
    assert!(super::comm::loopback_endpoint("10.0.0.1:5000").is_err() && super::comm::loopback_endpoint("127.0.0.1:5000").is_ok());
}

#[test]
fn gpu_ranks_get_every_launch_in_order_and_every_rank_s_bytes() {
    // What the graph decoder's ranks (graph/tp.rs) exchange over these links: the exchange buffers'
    // handles and ready words (all-gathers of bytes), then each replay's input, in order.
    let (mut root, shards) = pair(3, Duration::from_secs(5));
    let workers: Vec<_> = shards
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                let handles = c.all_gather_bytes(&[c.rank as u8; 3], "exchange handles").unwrap();
                let first = c.receive_launch().unwrap();
                let second = c.receive_launch().unwrap();
                (handles, first, second, c.receive_launch().unwrap())
            })
        })
        .collect();
    let handles = root.all_gather_bytes(&[9u8; 2], "exchange handles").unwrap();
    assert_eq!(handles, vec![vec![9, 9], vec![1, 1, 1], vec![2, 2, 2]]);
    let first = Launch { seq: 1, bucket: 2, input: vec![11, 12, 0, 1, 0, 1] };
    let second = Launch { seq: 2, bucket: 1, input: vec![13, 2, 0] };
    root.send_launch(&first).unwrap();
    root.send_launch(&second).unwrap();
    root.close();
    for worker in workers {
        let (gathered, got_first, got_second, end) = worker.join().unwrap();
        assert_eq!(gathered, handles);
        assert_eq!(got_first, Some(first.clone()));
        assert_eq!(got_second, Some(second.clone()));
        assert_eq!(end, None, "the coordinator closed the group");
    }
}

#[test]
fn a_malformed_launch_fails_the_shard_and_a_closed_link_is_seen_by_its_watcher() {
    use std::io::Read;
    let (root, mut shards) = pair(2, Duration::from_secs(5));
    let mut watched = root.watch_links().unwrap();
    assert_eq!(watched.len(), 1);
    let mut shard = shards.pop().unwrap();
    // A launch whose input is not three values a row: refused, and the shard's links close.
    let mut bad = vec![4u8];
    let payload = [1u64.to_le_bytes().to_vec(), 2u32.to_le_bytes().to_vec(), 7i32.to_le_bytes().to_vec()].concat();
    bad.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bad.extend_from_slice(&payload);
    // Written on the coordinator's side of the link, as its send_launch frames it.
    {
        use std::io::Write;
        watched[0].write_all(&bad).unwrap();
    }
    assert!(shard.receive_launch().unwrap_err().message.contains("malformed launch"));
    // The shard failed and closed its end: the coordinator's watcher reads the end of the link.
    let mut byte = [0u8; 1];
    assert_eq!(watched[0].read(&mut byte).unwrap_or(0), 0);
    drop(root);
}

#[test]
fn a_watcher_outlasts_the_read_timeout_its_link_was_left_with() {
    // The join's last all-gather leaves rank 0's links with a read timeout (the clones a watcher
    // reads share the socket): the watcher must not take its expiry for a closed link, which
    // raised the abort word of a healthy group on the first H100 run.
    let timeout = Duration::from_millis(100);
    let (mut root, mut shards) = pair(2, timeout);
    let mut shard = shards.pop().unwrap();
    let worker = std::thread::spawn(move || {
        shard.all_gather_bytes(&[1u8], "ready").unwrap();
        shard
    });
    root.all_gather_bytes(&[0u8], "ready").unwrap();
    let shard = worker.join().unwrap();
    let mut link = root.watch_links().unwrap().pop().unwrap();
    let (ended, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        Communicator::wait_for_end(&mut link);
        let _ = ended.send(());
    });
    assert!(seen.recv_timeout(timeout * 5).is_err(), "the link is still open: the watcher must still be waiting");
    drop(shard);
    assert!(seen.recv_timeout(Duration::from_secs(5)).is_ok(), "the shard's end closed its link");
}
