//! Links the system libsrtp 2 (Debian `libsrtp2-dev`, installed by `.ci/install.sh`).
fn main() {
    println!("cargo:rustc-link-lib=srtp2");
    println!("cargo:rerun-if-changed=build.rs");
}
