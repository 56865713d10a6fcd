//! Synchronized batch norm across MPI processes: each rank holds an uneven slice of one batch
//! (rank 1 none at all), trains two steps, and checks its slice of y and dx, dgamma, dbeta,
//! the batch and running statistics against the single-process result on the whole batch
//! (within 1e-6 relative), that every rank holds the same bits, and that a second run gives
//! the same bits. Exits 1 on any mismatch.
//!
//!     cargo build --release --features mpi --example sync_bn_mpi
//!     mpiexec -n 3 target/release/examples/sync_bn_mpi            # the check
//!     mpiexec -n 4 target/release/examples/sync_bn_mpi --bench    # time and bytes per step
//!
//! (MPICH: `apt-get install libmpich-dev mpich libclang-dev`; several machines: `mpiexec -f
//! hosts -n 8 ...`, one process per GPU.)

use std::time::{Duration, Instant};

use wgpu_batchnorm::mpi::traits::Communicator;
use wgpu_batchnorm::{
    BatchNorm, BatchNormConfig, Collective, Context, Layout, Mode, MpiCollective, SyncBatchNorm,
    SYNC_BACKWARD_BYTES_PER_CHANNEL, SYNC_FORWARD_BYTES_PER_CHANNEL,
};

/// A collective that times its exchanges (the cost of communication, apart from compute).
struct Timed<C: Collective> {
    inner: C,
    spent: Duration,
}

impl<C: Collective> Collective for Timed<C> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn ranks(&self) -> usize {
        self.inner.ranks()
    }
    fn all_gather(&mut self, local: &[f64]) -> wgpu_batchnorm::Result<Vec<f64>> {
        let t = Instant::now();
        let out = self.inner.all_gather(local);
        self.spent += t.elapsed();
        out
    }
}

/// Rows of rank `r`: uneven, rank 1 empty.
fn rows_of(r: usize) -> usize {
    [5, 0, 7, 3, 2, 6][r % 6]
}

/// A deterministic batch: large per-channel means, small spreads.
fn batch(len: usize, c: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = wgpu_batchnorm::internal::Rng::new(seed);
    let x = (0..len)
        .map(|i| (500.0 * (i % c) as f64 + rng.normal()) as f32)
        .collect();
    let dy = (0..len).map(|_| rng.normal() as f32).collect();
    (x, dy)
}

fn close(what: &str, got: &[f32], want: &[f32]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} values, expected {}",
            got.len(),
            want.len()
        ));
    }
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        if (a - b).abs() > 1e-6 * b.abs().max(1.0) + 2e-6 * scale {
            return Err(format!("{what}[{i}]: synchronized {a}, whole batch {b}"));
        }
    }
    Ok(())
}

fn check(
    ctx: &Context,
    comm: &mut Timed<MpiCollective<impl Communicator>>,
    config: BatchNormConfig,
    inner: usize,
) -> Result<Vec<u32>, String> {
    let (rank, ranks) = (comm.rank(), comm.ranks());
    let c = config.channels;
    let total: usize = (0..ranks).map(rows_of).sum();
    let start: usize = (0..rank).map(rows_of).sum();
    let rows = rows_of(rank);
    let shape = |n: usize| match config.layout {
        Layout::ChannelsLast => vec![n, inner, c],
        Layout::ChannelsFirst => vec![n, c, inner],
    };
    let per_row = inner * c;
    let e = |e: wgpu_batchnorm::Error| e.to_string();
    let mut sync = SyncBatchNorm::new(
        ctx,
        config.clone(),
        Timed {
            inner: MpiCollective::new(comm.inner.communicator().duplicate()),
            spent: Duration::ZERO,
        },
    )
    .map_err(e)?;
    let mut single = BatchNorm::new(ctx, config.clone()).map_err(e)?;
    for step in 0..2 {
        let (x, dy) = batch(total * per_row, c, step);
        let mine = |v: &[f32]| v[start * per_row..(start + rows) * per_row].to_vec();
        let y = sync
            .forward_host(&mine(&x), &shape(rows), Mode::Training)
            .map_err(e)?;
        let (dx, dgamma, dbeta) = sync
            .backward_host(&mine(&x), &mine(&dy), &shape(rows))
            .map_err(e)?;
        let y_all = single
            .forward_host(&x, &shape(total), Mode::Training)
            .map_err(e)?;
        let (dx_all, dgamma_all, dbeta_all) =
            single.backward_host(&x, &dy, &shape(total)).map_err(e)?;
        if config.layout == Layout::ChannelsLast {
            close("y", &y, &mine(&y_all))?;
            close("dx", &dx, &mine(&dx_all))?;
        }
        close("dgamma", &dgamma, &dgamma_all)?;
        close("dbeta", &dbeta, &dbeta_all)?;
    }
    let l = sync.layer();
    let stats: Vec<f32> = [
        l.batch_mean(),
        l.batch_var(),
        l.running_mean(),
        l.running_var(),
        l.dgamma(),
        l.dbeta(),
    ]
    .into_iter()
    .map(|v| v.map_err(e))
    .collect::<Result<Vec<_>, _>>()?
    .concat();
    close(
        "batch mean",
        &l.batch_mean().map_err(e)?,
        &single.batch_mean().map_err(e)?,
    )?;
    close(
        "batch var",
        &l.batch_var().map_err(e)?,
        &single.batch_var().map_err(e)?,
    )?;
    close(
        "running mean",
        &l.running_mean().map_err(e)?,
        &single.running_mean().map_err(e)?,
    )?;
    close(
        "running var",
        &l.running_var().map_err(e)?,
        &single.running_var().map_err(e)?,
    )?;
    // Every rank holds the same bits.
    let bits: Vec<f64> = stats.iter().map(|v| v.to_bits() as f64).collect();
    let all = comm.all_gather(&bits).map_err(e)?;
    if all.chunks_exact(bits.len()).any(|r| r != &bits[..]) {
        return Err("ranks hold different statistics".into());
    }
    Ok(stats.iter().map(|v| v.to_bits()).collect())
}

/// Time per step against ranks: a batch of 4096 x 64 split evenly.
fn bench(ctx: &Context, comm: Timed<MpiCollective<impl Communicator>>) -> Result<(), String> {
    let (rank, ranks) = (comm.rank(), comm.ranks());
    let (total, c, steps) = (4096usize, 64usize, 20);
    let rows = total / ranks + usize::from(rank < total % ranks);
    let e = |e: wgpu_batchnorm::Error| e.to_string();
    let mut sync = SyncBatchNorm::new(ctx, BatchNormConfig::keras(c), comm).map_err(e)?;
    let (x, dy) = batch(rows * c, c, 1);
    let shape = [rows, c];
    sync.forward_host(&x, &shape, Mode::Training).map_err(e)?; // warm-up: pipelines, plans
    sync.backward_host(&x, &dy, &shape).map_err(e)?;
    let spent_before = sync.collective().spent;
    let t = Instant::now();
    for _ in 0..steps {
        sync.forward_host(&x, &shape, Mode::Training).map_err(e)?;
        sync.backward_host(&x, &dy, &shape).map_err(e)?;
    }
    let per_step = t.elapsed().as_secs_f64() * 1e3 / steps as f64;
    let exchange = (sync.collective().spent - spent_before).as_secs_f64() * 1e3 / steps as f64;
    // Two exchanges per phase (a 2-value header, then the payload), two phases; MPI sends
    // each exchange's 8-byte length before it.
    let sent =
        4 * (16 + 8) + c * (SYNC_FORWARD_BYTES_PER_CHANNEL + SYNC_BACKWARD_BYTES_PER_CHANNEL);
    if rank == 0 {
        println!(
            "ranks {ranks}: {per_step:.3} ms per step ({exchange:.3} ms in exchanges, {:.3} ms compute and readback); {sent} bytes sent per rank per step, {} received",
            per_step - exchange,
            sent * ranks
        );
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let Some(universe) = wgpu_batchnorm::mpi::initialize() else {
        eprintln!("MPI could not be initialized");
        return std::process::ExitCode::FAILURE;
    };
    let world = universe.world();
    // On a failure, abort every rank (the others may be waiting in an exchange).
    let abort = universe.world();
    let (rank, ranks) = (world.rank(), world.size());
    let ctx = match Context::new() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("rank {rank}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut comm = Timed {
        inner: MpiCollective::new(world),
        spent: Duration::ZERO,
    };
    let result = if std::env::args().any(|a| a == "--bench") {
        bench(&ctx, comm)
    } else {
        let cases = [
            (BatchNormConfig::keras(5), 4),
            (BatchNormConfig::pytorch(3), 1),
            (
                BatchNormConfig::pytorch(4)
                    .with_layout(Layout::ChannelsFirst)
                    .with_relu(true),
                6,
            ),
        ];
        // Each case twice: the same bits run to run.
        cases
            .into_iter()
            .try_for_each(|(config, inner)| {
                let first = check(&ctx, &mut comm, config.clone(), inner)?;
                let again = check(&ctx, &mut comm, config, inner)?;
                if first != again {
                    return Err("a second run gave other bits".to_string());
                }
                Ok(())
            })
            .map(|()| {
                if rank == 0 {
                    println!("synchronized batch norm over {ranks} ranks: every check passed");
                }
            })
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rank {rank}: {e}");
            abort.abort(1)
        }
    }
}
