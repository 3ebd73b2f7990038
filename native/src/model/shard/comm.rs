//! The CPU communicator of a tensor-parallel group: rank processes on one machine joined over
//! loopback TCP (127.0.0.1 only) in a star around rank 0. Rank 0 connects to every shard's
//! endpoint and proves the group's secret, which the hive created for this launch and handed to
//! every member at spawn; a connection without it is dropped. Collectives go through rank 0:
//! an all-gather collects every rank's buffer in rank order and sends the whole set back, so
//! each rank then reduces the very same values in the very same order.
//!
//! Every wait has a deadline: a collective that does not complete within `timeout` fails, and a
//! rank that dies closes its socket, which its peers read as end-of-file at once. A failure
//! poisons the communicator and shuts every link down, so the other ranks' pending collectives
//! fail immediately too, rather than each waiting out its own deadline.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{EngineError, EngineResult, ErrorCode};

const MAGIC: &[u8; 8] = b"rbeeTP01";
const TAG_STEP: u8 = 1;
const TAG_DATA: u8 = 2;
const TAG_CLOSE: u8 = 3;
const TAG_LAUNCH: u8 = 4;
/// A handshake, or a secret, larger than this is not one.
const MAX_SECRET: usize = 256;
/// How long an accepted connection has to prove the secret before the shard drops it.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a shard is asked to run: `tokens` at positions `start..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub tokens: Vec<u32>,
    pub start: usize,
}

/// What a GPU shard is asked to run: one replay of its decode graph for `bucket` rows, with the
/// coordinator's input for it (each row's token, then each row's position, then each row's slot)
/// and the launch's sequence number, which numbers the graph's exchanges (kernels/tp.cu).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub seq: u64,
    pub bucket: usize,
    pub input: Vec<i32>,
}

impl Launch {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + 4 * self.input.len());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&(self.bucket as u32).to_le_bytes());
        for v in &self.input {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    fn decode(payload: &[u8]) -> Option<Self> {
        if payload.len() < 12 || !payload.len().is_multiple_of(4) {
            return None;
        }
        let seq = u64::from_le_bytes(payload[0..8].try_into().ok()?);
        let bucket = u32::from_le_bytes(payload[8..12].try_into().ok()?) as usize;
        let input: Vec<i32> = payload[12..].chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        (input.len() == 3 * bucket).then_some(Self { seq, bucket, input })
    }
}

pub struct Communicator {
    pub rank: usize,
    pub world: usize,
    timeout: Duration,
    /// Rank 0: one link per shard, in rank order (shard r at index r - 1). A shard: its link to rank 0.
    links: Vec<TcpStream>,
    failed: Option<String>,
}

fn comm_error(message: String) -> EngineError {
    EngineError::new(ErrorCode::Internal, format!("tensor-parallel group: {message}"))
}

/// Loopback only: the group's traffic never leaves the machine.
pub fn loopback_endpoint(endpoint: &str) -> EngineResult<SocketAddr> {
    let addr: SocketAddr =
        endpoint.parse().map_err(|_| EngineError::invalid_request(format!("tensor-parallel endpoint \"{endpoint}\" is not 127.0.0.1:PORT")))?;
    if !matches!(addr, SocketAddr::V4(v4) if v4.ip().is_loopback()) || addr.port() == 0 {
        return Err(EngineError::invalid_request(format!("tensor-parallel endpoint \"{endpoint}\" must be 127.0.0.1 with a port")));
    }
    Ok(addr)
}

fn check_secret(secret: &str) -> EngineResult<()> {
    if secret.len() < 16 || secret.len() > MAX_SECRET {
        return Err(EngineError::invalid_request("tensor-parallel secret: 16 to 256 characters"));
    }
    Ok(())
}

/// Byte comparison whose time does not depend on where the first difference is.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn read_full(stream: &mut TcpStream, buf: &mut [u8], deadline: Option<Instant>) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let wait = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(std::io::Error::new(ErrorKind::TimedOut, "timed out"));
                }
                Some(left)
            }
            None => None,
        };
        stream.set_read_timeout(wait)?;
        match stream.read(&mut buf[done..]) {
            Ok(0) => return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "the peer closed the connection")),
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Err(std::io::Error::new(ErrorKind::TimedOut, "timed out")),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_frame(stream: &mut TcpStream, tag: u8, payload: &[u8], timeout: Duration) -> std::io::Result<()> {
    stream.set_write_timeout(Some(timeout))?;
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.push(tag);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(payload);
    stream.write_all(&frame)
}

fn read_frame(stream: &mut TcpStream, deadline: Option<Instant>) -> std::io::Result<(u8, Vec<u8>)> {
    read_frame_within(stream, deadline, usize::MAX)
}

fn read_frame_within(stream: &mut TcpStream, deadline: Option<Instant>, limit: usize) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    read_full(stream, &mut head, deadline)?;
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > limit {
        return Err(std::io::Error::new(ErrorKind::InvalidData, format!("a message of {len} bytes")));
    }
    let mut payload = vec![0u8; len];
    read_full(stream, &mut payload, deadline)?;
    Ok((head[0], payload))
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn bytes_f32(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn hello(secret: &str, rank: usize, world: usize, fingerprint: u64) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(secret.len() as u32).to_le_bytes());
    out.extend_from_slice(secret.as_bytes());
    out.extend_from_slice(&(rank as u32).to_le_bytes());
    out.extend_from_slice(&(world as u32).to_le_bytes());
    out.extend_from_slice(&fingerprint.to_le_bytes());
    out
}

impl Communicator {
    /// Rank 0: connects to the shards' endpoints (shard r is `endpoints[r - 1]`), retrying while
    /// they load, for at most `wait`.
    pub fn connect(endpoints: &[String], secret: &str, fingerprint: u64, timeout: Duration, wait: Duration) -> EngineResult<Self> {
        check_secret(secret)?;
        let world = endpoints.len() + 1;
        let deadline = Instant::now() + wait;
        let mut links = Vec::with_capacity(endpoints.len());
        for (index, endpoint) in endpoints.iter().enumerate() {
            let rank = index + 1;
            let addr = loopback_endpoint(endpoint)?;
            let mut stream = loop {
                match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                    Ok(stream) => break stream,
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => return Err(comm_error(format!("shard {rank} at {endpoint} did not accept within {} s: {e}", wait.as_secs()))),
                }
            };
            stream.set_nodelay(true).map_err(|e| comm_error(format!("shard {rank}: {e}")))?;
            write_frame(&mut stream, TAG_STEP, &hello(secret, rank, world, fingerprint), HANDSHAKE_TIMEOUT)
                .map_err(|e| comm_error(format!("handshake with shard {rank} at {endpoint}: {e}")))?;
            let (_, answer) = read_frame(&mut stream, Some(Instant::now() + HANDSHAKE_TIMEOUT.max(wait.min(Duration::from_secs(60)))))
                .map_err(|e| comm_error(format!("handshake with shard {rank} at {endpoint}: {e}")))?;
            if answer.first() != Some(&0) {
                let why = String::from_utf8_lossy(answer.get(1..).unwrap_or_default()).to_string();
                return Err(EngineError::invalid_request(format!("shard {rank} at {endpoint} refused the group: {why}")));
            }
            links.push(stream);
        }
        Ok(Self { rank: 0, world, timeout, links, failed: None })
    }

    /// A shard: accepts connections on `listener` until one proves the secret and this shard's
    /// place in the group, for at most `wait` (or until `cancel` is set).
    #[allow(clippy::too_many_arguments)]
    pub fn accept(
        listener: &TcpListener,
        rank: usize,
        world: usize,
        secret: &str,
        fingerprint: u64,
        timeout: Duration,
        wait: Duration,
        cancel: &AtomicBool,
    ) -> EngineResult<Self> {
        check_secret(secret)?;
        let deadline = Instant::now() + wait;
        listener.set_nonblocking(true).map_err(|e| comm_error(format!("listener: {e}")))?;
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(EngineError::new(ErrorCode::ModelClosed, format!("shard {rank} was closed before its coordinator joined")));
            }
            if Instant::now() >= deadline {
                return Err(comm_error(format!("shard {rank}: no coordinator joined within {} s", wait.as_secs())));
            }
            let mut stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Err(e) => return Err(comm_error(format!("shard {rank}: accept: {e}"))),
            };
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_nodelay(true);
            let Ok((_, hello_bytes)) = read_frame_within(&mut stream, Some(Instant::now() + HANDSHAKE_TIMEOUT), 64 + MAX_SECRET) else { continue };
            let expected = hello(secret, rank, world, fingerprint);
            let secret_ok = hello_bytes.len() >= 12
                && &hello_bytes[..8] == MAGIC
                && same_bytes(&hello_bytes[12..(12 + secret.len()).min(hello_bytes.len())], secret.as_bytes());
            if !secret_ok {
                // Not the coordinator: whoever it is learns nothing and the shard keeps waiting.
                continue;
            }
            if !same_bytes(&hello_bytes, &expected) {
                let why = format!("shard {rank} of {world} runs a different model or group layout than its coordinator");
                let mut answer = vec![1u8];
                answer.extend_from_slice(why.as_bytes());
                let _ = write_frame(&mut stream, TAG_STEP, &answer, HANDSHAKE_TIMEOUT);
                return Err(EngineError::invalid_request(why));
            }
            write_frame(&mut stream, TAG_STEP, &[0], HANDSHAKE_TIMEOUT).map_err(|e| comm_error(format!("shard {rank}: handshake: {e}")))?;
            return Ok(Self { rank, world, timeout, links: vec![stream], failed: None });
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn check(&self) -> EngineResult<()> {
        match &self.failed {
            Some(why) => Err(comm_error(format!("the group already failed: {why}"))),
            None => Ok(()),
        }
    }

    /// Poisons the communicator and closes every link, so that the peers' waits end now.
    fn fail(&mut self, why: String) -> EngineError {
        for link in &self.links {
            let _ = link.shutdown(Shutdown::Both);
        }
        self.failed = Some(why.clone());
        comm_error(why)
    }

    /// Rank 0: sends the next step to every shard.
    pub fn send_step(&mut self, step: &Step) -> EngineResult<()> {
        self.check()?;
        let mut payload = (step.start as u32).to_le_bytes().to_vec();
        for t in &step.tokens {
            payload.extend_from_slice(&t.to_le_bytes());
        }
        for rank in 1..self.world {
            if let Err(e) = write_frame(&mut self.links[rank - 1], TAG_STEP, &payload, self.timeout) {
                return Err(self.fail(format!("sending a step to shard {rank}: {e}")));
            }
        }
        Ok(())
    }

    /// A shard: waits (without a deadline: the coordinator may idle for hours) for the next
    /// step; None once the coordinator closed the group.
    pub fn receive_step(&mut self) -> EngineResult<Option<Step>> {
        self.check()?;
        match read_frame(&mut self.links[0], None) {
            Ok((TAG_STEP, payload)) if payload.len() >= 4 && payload.len() % 4 == 0 => {
                let start = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
                let tokens = payload[4..].chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                Ok(Some(Step { tokens, start }))
            }
            Ok((TAG_CLOSE, _)) => Ok(None),
            Ok((tag, _)) => Err(self.fail(format!("unexpected message {tag} from the coordinator"))),
            Err(e) => Err(self.fail(format!("the coordinator is gone: {e}"))),
        }
    }

    /// Rank 0: sends the next graph launch to every shard.
    pub fn send_launch(&mut self, launch: &Launch) -> EngineResult<()> {
        self.check()?;
        let payload = launch.encode();
        for rank in 1..self.world {
            if let Err(e) = write_frame(&mut self.links[rank - 1], TAG_LAUNCH, &payload, self.timeout) {
                return Err(self.fail(format!("sending a launch to shard {rank}: {e}")));
            }
        }
        Ok(())
    }

    /// A GPU shard: waits (without a deadline, as `receive_step`) for the next graph launch;
    /// None once the coordinator closed the group.
    pub fn receive_launch(&mut self) -> EngineResult<Option<Launch>> {
        self.check()?;
        match read_frame_within(&mut self.links[0], None, 12 + 12 * 1024) {
            Ok((TAG_LAUNCH, payload)) => match Launch::decode(&payload) {
                Some(launch) => Ok(Some(launch)),
                None => Err(self.fail("a malformed launch from the coordinator".to_string())),
            },
            Ok((TAG_CLOSE, _)) => Ok(None),
            Ok((tag, _)) => Err(self.fail(format!("unexpected message {tag} from the coordinator"))),
            Err(e) => Err(self.fail(format!("the coordinator is gone: {e}"))),
        }
    }

    /// Rank 0: a second handle on each shard's link, for a thread that only waits for the link to
    /// close (a shard's process that ends closes its socket): shards send nothing after joining.
    pub fn watch_links(&self) -> EngineResult<Vec<TcpStream>> {
        self.check()?;
        self.links.iter().map(|link| link.try_clone().map_err(|e| comm_error(format!("watching a link: {e}")))).collect()
    }

    /// Blocks until `link` (one of `watch_links`) ends: its peer closed it, or it failed. Clones
    /// of a link share its socket, so the read timeout the communicator's own last read left on
    /// it applies here too: running out of it is not the end of the link.
    pub fn wait_for_end(link: &mut TcpStream) {
        let mut byte = [0u8; 1];
        loop {
            match link.read(&mut byte) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // A short timeout left on the socket would make this a busy loop: pace it.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => return,
            }
        }
    }

    /// Rank 0: tells the shards the group is over.
    pub fn close(&mut self) {
        if self.rank == 0 && self.failed.is_none() {
            for link in self.links.iter_mut() {
                let _ = write_frame(link, TAG_CLOSE, &[], Duration::from_millis(200));
            }
        }
        for link in &self.links {
            let _ = link.shutdown(Shutdown::Both);
        }
        self.failed.get_or_insert_with(|| "closed".to_string());
    }

    /// Every rank's `data`, in rank order, on every rank.
    pub fn all_gather(&mut self, data: &[f32]) -> EngineResult<Vec<Vec<f32>>> {
        Ok(self.all_gather_bytes(&f32_bytes(data), "all-gather")?.iter().map(|part| bytes_f32(part)).collect())
    }

    /// Every rank's bytes, in rank order, on every rank (`what` names the exchange in errors).
    pub fn all_gather_bytes(&mut self, data: &[u8], what: &str) -> EngineResult<Vec<Vec<u8>>> {
        let parts = self.collect(data, what)?;
        let deadline = Instant::now() + self.timeout;
        if self.rank == 0 {
            let parts = parts.expect("rank 0 collects");
            let mut payload = (parts.len() as u32).to_le_bytes().to_vec();
            for part in &parts {
                payload.extend_from_slice(&(part.len() as u32).to_le_bytes());
            }
            for part in &parts {
                payload.extend_from_slice(part);
            }
            for rank in 1..self.world {
                if let Err(e) = write_frame(&mut self.links[rank - 1], TAG_DATA, &payload, self.timeout) {
                    return Err(self.fail(format!("{what}: sending to shard {rank}: {e}")));
                }
            }
            return Ok(parts);
        }
        let payload = match read_frame(&mut self.links[0], Some(deadline)) {
            Ok((TAG_DATA, payload)) => payload,
            Ok((tag, _)) => return Err(self.fail(format!("{what}: unexpected message {tag} from the coordinator"))),
            Err(e) => return Err(self.fail(format!("{what}: the coordinator: {e}"))),
        };
        let count = u32::from_le_bytes(payload.get(0..4).and_then(|b| b.try_into().ok()).unwrap_or_default()) as usize;
        if count != self.world || payload.len() < 4 + 4 * count {
            return Err(self.fail(format!("{what}: a malformed answer from the coordinator")));
        }
        let lens: Vec<usize> = (0..count).map(|i| u32::from_le_bytes(payload[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
        let mut at = 4 + 4 * count;
        let mut parts = Vec::with_capacity(count);
        for len in lens {
            let Some(bytes) = payload.get(at..at + len) else {
                return Err(self.fail(format!("{what}: a short answer from the coordinator")));
            };
            parts.push(bytes.to_vec());
            at += len;
        }
        Ok(parts)
    }

    /// Every rank's `data` on rank 0, in rank order; None on the shards.
    pub fn gather(&mut self, data: &[f32]) -> EngineResult<Option<Vec<Vec<f32>>>> {
        Ok(self.collect(&f32_bytes(data), "gather")?.map(|parts| parts.iter().map(|part| bytes_f32(part)).collect()))
    }

    /// The sum of every rank's `data`, added in rank order on every rank alike.
    pub fn all_reduce_sum(&mut self, data: &[f32]) -> EngineResult<Vec<f32>> {
        let parts = self.all_gather(data)?;
        Ok(sum_in_rank_order(&parts))
    }

    fn collect(&mut self, data: &[u8], what: &str) -> EngineResult<Option<Vec<Vec<u8>>>> {
        self.check()?;
        let deadline = Instant::now() + self.timeout;
        if self.rank != 0 {
            if let Err(e) = write_frame(&mut self.links[0], TAG_DATA, data, self.timeout) {
                return Err(self.fail(format!("{what}: sending to the coordinator: {e}")));
            }
            return Ok(None);
        }
        let mut parts = Vec::with_capacity(self.world);
        parts.push(data.to_vec());
        for rank in 1..self.world {
            match read_frame(&mut self.links[rank - 1], Some(deadline)) {
                Ok((TAG_DATA, payload)) => parts.push(payload),
                Ok((tag, _)) => return Err(self.fail(format!("{what}: unexpected message {tag} from shard {rank}"))),
                Err(e) if e.kind() == ErrorKind::TimedOut => {
                    return Err(self.fail(format!("{what}: shard {rank} did not answer within {} ms", self.timeout.as_millis())))
                }
                Err(e) => return Err(self.fail(format!("{what}: shard {rank} is gone: {e}"))),
            }
        }
        Ok(Some(parts))
    }
}

impl Drop for Communicator {
    fn drop(&mut self) {
        self.close();
    }
}

/// `((p0 + p1) + p2) + ...` elementwise: the one order in which a group and its single-process
/// reference both add partial sums.
pub fn sum_in_rank_order(parts: &[Vec<f32>]) -> Vec<f32> {
    let mut out = parts.first().cloned().unwrap_or_default();
    for part in &parts[1.min(parts.len())..] {
        for (o, p) in out.iter_mut().zip(part) {
            *o += *p;
        }
    }
    out
}
