//! Finds libotter for linking (std only, no crates). In order:
//!  1. OTTER_LIB_DIR: the folder holding libotter.so (a build folder or an installed prefix's lib);
//!  2. pkg-config (`pkg-config --variable=libdir otter`: an installed libotter-dev or a
//!     `cmake --install` prefix on PKG_CONFIG_PATH);
//!  3. the repository's build folder (../../build) when this crate is used from a source checkout.
//! The folder is also added as an RPATH of test and example binaries so `cargo test` runs them.
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn has_lib(dir: &Path) -> bool {
    dir.join("libotter.so").exists() || dir.join("libotter.dylib").exists()
}

fn pkg_config_libdir() -> Option<PathBuf> {
    let out = Command::new("pkg-config").args(["--variable=libdir", "otter"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    if has_lib(&dir) { Some(dir) } else { None }
}

fn main() {
    println!("cargo:rerun-if-env-changed=OTTER_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-changed=build.rs");
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let dir = if let Ok(d) = env::var("OTTER_LIB_DIR") {
        let d = PathBuf::from(d);
        if !has_lib(&d) {
            panic!("OTTER_LIB_DIR={} holds no libotter.so (build it: ninja -C build otter)", d.display());
        }
        d
    } else if let Some(d) = pkg_config_libdir() {
        d
    } else {
        let d = manifest.join("../../build");
        if !has_lib(&d) {
            panic!(
                "libotter not found: set OTTER_LIB_DIR to the folder of libotter.so, install libotter-dev \
                 (pkg-config otter), or build the repository (cmake -S . -B build && ninja -C build otter)"
            );
        }
        d.canonicalize().unwrap_or(d)
    };
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=dylib=otter");
    // Test, example and downstream binaries find the library where it was linked from.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    println!("cargo:lib_dir={}", dir.display());
}
