//! Every WGSL module the engine builds is parsed and validated by naga (no GPU needed).

use wgpu_batchnorm::kernels::{channel_source, stream_source};
use wgpu_batchnorm::wgpu::naga;

fn validate(name: &str, source: &str, caps: naga::valid::Capabilities) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    let entries: Vec<_> = module
        .entry_points
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert!(!entries.is_empty(), "{name} has no entry point");
}

#[test]
fn stream_module_without_subgroups_validates_with_no_capabilities() {
    validate(
        "stream (workgroup)",
        &stream_source(false),
        naga::valid::Capabilities::empty(),
    );
}

#[test]
fn stream_module_with_subgroups_validates() {
    validate(
        "stream (subgroup)",
        &stream_source(true),
        naga::valid::Capabilities::SUBGROUP,
    );
}

#[test]
fn subgroup_module_is_rejected_without_the_capability() {
    let module = naga::front::wgsl::parse_str(&stream_source(true)).expect("parses");
    let r = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module);
    assert!(r.is_err(), "subgroup ops must need the SUBGROUP capability");
}

#[test]
fn channel_module_validates() {
    validate(
        "channel",
        &channel_source(),
        naga::valid::Capabilities::empty(),
    );
}

#[test]
fn every_entry_point_the_host_uses_exists() {
    for (src, names) in [
        (
            stream_source(false),
            &["pivot", "stats", "normalize", "reduce", "dx"][..],
        ),
        (
            stream_source(true),
            &["pivot", "stats", "normalize", "reduce", "dx"][..],
        ),
        (
            channel_source(),
            &[
                "finalize_training",
                "finalize_inference",
                "finalize_backward",
            ][..],
        ),
    ] {
        let m = naga::front::wgsl::parse_str(&src).expect("parses");
        for n in names {
            assert!(m.entry_points.iter().any(|e| e.name == *n), "missing {n}");
        }
    }
}
