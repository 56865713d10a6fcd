//! Allocation failure under an address-space limit: every allocation, host or device, is
//! fallible; one that did not happen never returns Ok. The checks run in a child process
//! (this test binary again) started under `ulimit -v`, so the limit binds only the child.

mod common;

use wgpu_batchnorm::{BatchNorm, BatchNormConfig, Context, Error, Tensor};

const CHILD: &str = "BNORM_OOM_CHILD";
const GIB: usize = 1 << 30;

/// Runs `test` of this binary in a child limited to `limit_kib` of address space.
fn run_limited(test: &str, limit_kib: u64) -> (bool, String) {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {limit_kib} && exec \"$0\" --exact {test} --nocapture --test-threads=1"
        ))
        .arg(exe)
        .env(CHILD, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// In the child: 1 GiB tensors until the limit; each Ok one is real (its last value reads
/// back what was written), then a clean `OutOfMemory`, never an abort.
#[test]
fn child_allocates_until_refused() {
    if std::env::var(CHILD).is_err() {
        return;
    }
    let ctx = Context::new().unwrap();
    let mut kept = Vec::new();
    let elements = GIB / 4;
    for i in 0..64 {
        match Tensor::zeros(&ctx, &[elements]) {
            Ok(t) => {
                // A sentinel in the last value reads back only from real memory.
                let at = (elements as u64 - 1) * 4;
                ctx.queue()
                    .write_buffer(t.buffer(), at, bytemuck::bytes_of(&1.5f32));
                let last = ctx.read_f32(t.buffer(), at, 1);
                assert_eq!(
                    last.ok(),
                    Some(vec![1.5]),
                    "tensor {i} was not really allocated"
                );
                kept.push(t);
            }
            Err(e) => {
                assert!(
                    matches!(e, Error::OutOfMemory(_) | Error::HostMemory { .. }),
                    "tensor {i}: {e}"
                );
                println!("REFUSED AT {i}: {e}");
                break;
            }
        }
    }
    // With the address space nearly used up: a layer of 2^24 channels (256 MB of host-side
    // initial values, and as much on the device) is an error, not an abort.
    let mut hog = Vec::new();
    while let Ok(t) = Tensor::zeros(&ctx, &[GIB / 16]) {
        hog.push(t);
    }
    match BatchNorm::new(&ctx, BatchNormConfig::keras(1 << 24)) {
        Ok(_) => println!("LAYER OK"),
        Err(e) => println!("LAYER REFUSED: {e}"),
    }
    drop((kept, hog));
    println!("CHILD DONE");
}

#[test]
fn allocation_failure_is_an_error_not_an_abort() {
    let _g = common::serial();
    // 6 GiB of address space: a few 1 GiB tensors fit, 64 do not.
    let (ok, text) = run_limited("child_allocates_until_refused", 6 << 20);
    eprintln!("{text}");
    assert!(ok, "{text}");
    assert!(text.contains("CHILD DONE"), "{text}");
    assert!(text.contains("REFUSED AT"), "{text}");
}
