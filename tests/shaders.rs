//! Every WGSL module the crate builds, the engine's and the network's, is parsed and
//! validated by naga as the crate compiles it (no GPU needed).

use wgpu_batchnorm::shader_sources;
use wgpu_batchnorm::wgpu::naga;

fn parse(name: &str, source: &str) -> naga::Module {
    naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)))
}

fn validate(name: &str, source: &str, caps: naga::valid::Capabilities) -> naga::Module {
    let module = parse(name, source);
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    assert!(!module.entry_points.is_empty(), "{name} has no entry point");
    module
}

fn source(name: &str) -> String {
    shader_sources()
        .into_iter()
        .find(|(n, _, _)| *n == name)
        .unwrap_or_else(|| panic!("no module {name}"))
        .1
}

#[test]
fn every_module_validates_with_only_the_capabilities_it_declares() {
    let all = shader_sources();
    assert!(all.len() >= 9, "engine and network modules: {}", all.len());
    for (name, src, subgroups) in all {
        let caps = if subgroups {
            naga::valid::Capabilities::SUBGROUP
        } else {
            naga::valid::Capabilities::empty()
        };
        validate(name, &src, caps);
    }
}

#[test]
fn subgroup_module_is_rejected_without_the_capability() {
    let module = parse("stream (subgroup)", &source("stream (subgroup)"));
    let r = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module);
    assert!(r.is_err(), "subgroup ops must need the SUBGROUP capability");
}

#[test]
fn every_entry_point_the_host_uses_exists() {
    let stream = &["pivot", "stats", "normalize", "reduce", "dx"][..];
    for (name, entries) in [
        ("stream (workgroup)", stream),
        ("stream (subgroup)", stream),
        (
            "channel",
            &[
                "finalize_training",
                "finalize_inference",
                "finalize_backward",
            ][..],
        ),
        ("nn/dense", &["gemm"][..]),
        ("nn/dense_backward", &["dense_backward"][..]),
        ("nn/dropout", &["dropout"][..]),
        (
            "nn/activation",
            &["activation_forward", "activation_backward"][..],
        ),
        ("nn/loss", &["softmax_xent"][..]),
        ("nn/optimizer", &["adam", "sgd"][..]),
        (
            "fused (workgroup)",
            &["fused_training", "fused_inference", "fused_backward"][..],
        ),
        (
            "fused (subgroup)",
            &["fused_training", "fused_inference", "fused_backward"][..],
        ),
        ("nn/gather", &["gather"][..]),
    ] {
        let m = parse(name, &source(name));
        for n in entries {
            assert!(
                m.entry_points.iter().any(|e| e.name == *n),
                "{name}: missing {n}"
            );
        }
    }
}

/// Workgroup sizes come from the Rust side, once: no module hard-codes one.
#[test]
fn workgroup_sizes_are_not_hard_coded_in_the_shader_files() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)
        .unwrap()
        .chain(std::fs::read_dir(format!("{dir}/nn")).unwrap())
    {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            files.push(path);
        }
    }
    assert!(files.len() >= 10, "{files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines().filter(|l| l.contains("@workgroup_size(")) {
            let inside = line.split("@workgroup_size(").nth(1).unwrap();
            assert!(
                !inside.starts_with(|c: char| c.is_ascii_digit()) || inside.starts_with("1)"),
                "{}: {line}",
                path.display()
            );
        }
    }
}
