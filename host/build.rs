//! The binary carries renga's buildpacks, WIT and SDKs (with `include_dir!`,
//! which cannot tell cargo what it read): rebuild when they change.

fn main() {
    for dir in ["../buildpacks", "../wit", "../sdk", "wit"] {
        println!("cargo:rerun-if-changed={dir}");
    }
}
