//! The raw FFI module (src/ffi.rs) against the C header (capi/include/otter/otter.h):
//! - every function the header declares (OTTER_API) is declared in ffi.rs with as many parameters,
//!   and ffi.rs declares no function the header lacks;
//! - every enumerator `OTTER_X = N` of the header and OTTER_API_VERSION have the same value in
//!   ffi.rs, and the Rust constants agree with the values the C compiler sees (when `cc` exists);
//! - otter_tensor_view has the C size, alignment and field offsets.
use std::collections::BTreeMap;
use std::fs;
use std::mem::{align_of, size_of};
use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn header() -> String {
    fs::read_to_string(repo().join("capi/include/otter/otter.h")).expect("read otter.h")
}

fn ffi_source() -> String {
    fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/ffi.rs")).expect("read ffi.rs")
}

/// Removes /* */ and // comments.
fn strip_comments(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        if rest.starts_with("/*") {
            rest = rest.find("*/").map_or("", |i| &rest[i + 2..]);
        } else if rest.starts_with("//") {
            rest = rest.find('\n').map_or("", |i| &rest[i..]);
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Number of comma-separated parameters in a parameter list ("void" and "" are zero).
fn count_params(list: &str) -> usize {
    let t = list.trim().trim_end_matches(',').trim();
    if t.is_empty() || t == "void" { 0 } else { t.split(',').count() }
}

fn ident_before_paren(s: &str) -> String {
    let before = &s[..s.find('(').unwrap()];
    before.trim_end().rsplit(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap().to_string()
}

/// Functions declared with OTTER_API in the header: name -> parameter count.
fn header_functions() -> BTreeMap<String, usize> {
    // Declarations only: preprocessor lines (#define OTTER_API ...) dropped.
    let text: String = strip_comments(&header())
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut out = BTreeMap::new();
    for decl in text.split("OTTER_API ").skip(1) {
        let decl = &decl[..decl.find(';').expect("a declaration ends with ';'")];
        let name = ident_before_paren(decl);
        let params = &decl[decl.find('(').unwrap() + 1..decl.rfind(')').unwrap()];
        out.insert(name, count_params(params));
    }
    out
}

/// `pub fn otter_x(...)` in ffi.rs: name -> parameter count.
fn ffi_functions() -> BTreeMap<String, usize> {
    let text = strip_comments(&ffi_source());
    let mut out = BTreeMap::new();
    for decl in text.split("pub fn ").skip(1) {
        let name = decl[..decl.find('(').unwrap()].trim().to_string();
        let open = decl.find('(').unwrap();
        let mut depth = 0;
        let mut close = open;
        for (i, c) in decl[open..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        close = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.insert(name, count_params(&decl[open + 1..close]));
    }
    out
}

/// `NAME = value` enumerators of the header, plus OTTER_API_VERSION.
fn header_constants() -> BTreeMap<String, i64> {
    let text = strip_comments(&header());
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("#define OTTER_API_VERSION") {
            out.insert("OTTER_API_VERSION".to_string(), rest.trim().parse().unwrap());
        }
        // Enumerators, possibly several on one line: "{ OTTER_DEVICE_CPU = 1, OTTER_DEVICE_CUDA = 2 }".
        for part in l.split(&[',', '{', '}'][..]) {
            let p = part.trim();
            if let Some((name, value)) = p.split_once('=') {
                let (name, value) = (name.trim(), value.trim());
                if name.starts_with("OTTER_") && value.parse::<i64>().is_ok() {
                    out.insert(name.to_string(), value.parse().unwrap());
                }
            }
        }
    }
    out
}

/// `pub const NAME: T = value;` in ffi.rs.
fn ffi_constants() -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for line in strip_comments(&ffi_source()).lines() {
        if let Some(rest) = line.trim().strip_prefix("pub const ") {
            let name = rest[..rest.find(':').unwrap()].trim();
            let value = rest[rest.find('=').unwrap() + 1..].trim().trim_end_matches(';').trim();
            out.insert(name.to_string(), value.parse().unwrap());
        }
    }
    out
}

#[test]
fn every_header_function_is_declared_with_its_arity() {
    let (h, f) = (header_functions(), ffi_functions());
    assert!(h.len() >= 40, "parsed only {} functions from otter.h", h.len());
    let missing: Vec<_> = h.keys().filter(|k| !f.contains_key(*k)).collect();
    let extra: Vec<_> = f.keys().filter(|k| !h.contains_key(*k)).collect();
    assert!(missing.is_empty(), "declared in otter.h but not in src/ffi.rs: {missing:?}");
    assert!(extra.is_empty(), "declared in src/ffi.rs but not in otter.h: {extra:?}");
    for (name, n) in &h {
        assert_eq!(f[name], *n, "{name}: {n} parameters in otter.h, {} in src/ffi.rs", f[name]);
    }
}

#[test]
fn every_enumerator_has_the_header_value() {
    let (h, f) = (header_constants(), ffi_constants());
    assert!(h.len() >= 24, "parsed only {} constants from otter.h", h.len());
    for (name, v) in &h {
        assert_eq!(f.get(name), Some(v), "{name} = {v} in otter.h; src/ffi.rs has {:?}", f.get(name));
    }
    for name in f.keys() {
        assert!(h.contains_key(name), "{name} is in src/ffi.rs but not in otter.h");
    }
}

#[test]
fn tensor_view_layout() {
    use otter::ffi::otter_tensor_view;
    let v = otter_tensor_view {
        data: std::ptr::null_mut(),
        dtype: 0,
        ndim: 0,
        shape: std::ptr::null(),
        device_type: 0,
        device_id: 0,
    };
    let base = &v as *const _ as usize;
    let offsets = [
        &v.data as *const _ as usize - base,
        &v.dtype as *const _ as usize - base,
        &v.ndim as *const _ as usize - base,
        &v.shape as *const _ as usize - base,
        &v.device_type as *const _ as usize - base,
        &v.device_id as *const _ as usize - base,
    ];
    let rust = format!("{} {} {:?}", size_of::<otter_tensor_view>(), align_of::<otter_tensor_view>(), offsets);
    assert_eq!(rust, "32 8 [0, 8, 12, 16, 24, 28]");

    // What the C compiler sees, when one is installed: the same layout and every enumerator.
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    if Command::new(&cc).arg("--version").output().is_err() {
        eprintln!("no C compiler ({cc}): compared with the documented layout only");
        return;
    }
    let dir = std::env::temp_dir().join(format!("otter-rs-layout-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let mut c = String::from(
        "#include <stddef.h>\n#include <stdio.h>\n#include \"otter/otter.h\"\nint main(void) {\n\
         printf(\"%zu %zu [%zu, %zu, %zu, %zu, %zu, %zu]\\n\", sizeof(otter_tensor_view), _Alignof(otter_tensor_view),\n\
         offsetof(otter_tensor_view, data), offsetof(otter_tensor_view, dtype), offsetof(otter_tensor_view, ndim),\n\
         offsetof(otter_tensor_view, shape), offsetof(otter_tensor_view, device_type), offsetof(otter_tensor_view, device_id));\n",
    );
    let constants = header_constants();
    for name in constants.keys() {
        c += &format!("printf(\"{name} %lld\\n\", (long long){name});\n");
    }
    c += "printf(\"enum_size %zu\\n\", sizeof(otter_status));\nreturn 0;\n}\n";
    fs::write(dir.join("layout.c"), c).unwrap();
    let status = Command::new(&cc)
        .args(["-std=c11", "-I"])
        .arg(repo().join("capi/include"))
        .arg(dir.join("layout.c"))
        .arg("-o")
        .arg(dir.join("layout"))
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed on the layout probe");
    let out = String::from_utf8(Command::new(dir.join("layout")).output().unwrap().stdout).unwrap();
    let mut lines = out.lines();
    assert_eq!(lines.next().unwrap(), rust, "otter_tensor_view: C layout vs Rust layout");
    let ffi = ffi_constants();
    for line in lines {
        let (name, value) = line.split_once(' ').unwrap();
        let value: i64 = value.parse().unwrap();
        if name == "enum_size" {
            assert_eq!(value as usize, size_of::<otter::ffi::otter_status>(), "C enums are int-sized");
        } else {
            assert_eq!(ffi[name], value, "{name}: C says {value}");
        }
    }
    fs::remove_dir_all(&dir).ok();
}
