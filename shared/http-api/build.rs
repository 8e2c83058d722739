//! Embeds the console's files (`console/`) in the binary: a table of name, media type, ETag
//! and bytes, generated at compile time, so `cargo build` alone ships the console and no
//! file is read at run time (the `api` Lambda has no such directory).

use std::fmt::Write;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the console directory")
        .map(|e| e.expect("a console directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut table = String::from("&[\n");
    for path in files {
        println!("cargo:rerun-if-changed={}", path.display());
        // Hidden files (an editor's, a file system's `._x.js`) and names that are not
        // UTF-8 are not part of the console.
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let media_type = match path.extension().and_then(|e| e.to_str()) {
            Some("html") => "text/html; charset=utf-8",
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            Some("png") => "image/png",
            Some("ico") => "image/x-icon",
            // Anything else in the directory is not served: a stray file never ships.
            _ => continue,
        };
        let bytes = std::fs::read(&path).expect("a console file");
        writeln!(
            table,
            "    Asset {{ name: {name:?}, media_type: {media_type:?}, etag: \"\\\"{:016x}\\\"\", bytes: include_bytes!({:?}) }},",
            fnv1a(&bytes),
            path.display().to_string(),
        )
        .unwrap();
    }
    table.push(']');
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("console_assets.rs");
    std::fs::write(out, table).expect("the generated asset table");
}

/// A content hash for the ETag (64-bit FNV-1a): it changes when the file does, which is all
/// a validator needs; it is not a security boundary.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
