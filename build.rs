//! Generates the upstream APIs' `.proto` files from the operation table, compiles them together
//! with the gateway's own protos using protox (pure Rust, no system `protoc`), and writes the
//! descriptor set and the typed bindings of the gateway's own services to `OUT_DIR`.
use ack_table::protogen;
use std::path::{Path, PathBuf};

/// The gateway's own hand-written protos.
const OWN_PROTOS: &[&str] = &[
    "ackgateway/v1/gateway.proto",
    "ackgateway/v1/broker.proto",
    "ackgateway/v1/explain.proto",
    "ackgateway/v1/operations.proto",
];

fn main() {
    println!("cargo:rerun-if-changed=ops/operations.json");
    println!("cargo:rerun-if-changed=proto/ackgateway");

    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let table_text =
        std::fs::read_to_string("ops/operations.json").expect("read ops/operations.json");
    let table = ack_table::documented(&table_text).expect("parse ops/operations.json");
    let files = protogen::render(&table.table).expect("render protos");

    let gen_root = out.join("proto");
    let mut inputs = Vec::new();
    for (rel, text) in &files {
        let path = gen_root.join(rel);
        std::fs::create_dir_all(path.parent().expect("file has a parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write generated proto");
        inputs.push(rel.clone());
    }
    for own in OWN_PROTOS {
        inputs.push((*own).to_string());
    }

    let includes: [&Path; 2] = [&gen_root, Path::new("proto")];
    let fds = protox::Compiler::new(includes)
        .expect("protox compiler")
        .include_imports(true)
        .include_source_info(true)
        .open_files(&inputs)
        .unwrap_or_else(|e| panic!("compiling protos: {e:?}"))
        .file_descriptor_set();
    let bytes = prost::Message::encode_to_vec(&fds);
    std::fs::write(out.join("descriptor.bin"), &bytes).expect("write descriptor set");
    // The same set without comments, for the request path: decoded, the documentation of 150
    // operations costs more memory than everything else the gateway holds, and only reflection
    // (which reads the full set) shows it.
    let mut lean = fds.clone();
    for file in &mut lean.file {
        file.source_code_info = None;
    }
    std::fs::write(
        out.join("descriptor_lean.bin"),
        prost::Message::encode_to_vec(&lean),
    )
    .expect("write lean descriptor set");

    // Typed bindings only for the gateway's own services; the upstream APIs are served
    // dynamically from the descriptor set by one generic path.
    let mut own = fds.clone();
    own.file
        .retain(|f| f.package() == "ackgateway.v1" || f.name().starts_with("google/protobuf/"));
    tonic_prost_build::configure()
        // Small per-call buffers: watch streams are long-lived and numerous (see the codec).
        .codec_path("crate::proto::codec::SmallBufferCodec")
        // Maps in a stable order: consecutive watch events list attributes alike.
        .btree_map(".")
        .build_client(true)
        .build_server(true)
        .compile_fds(own)
        .expect("generate gateway bindings");
}
