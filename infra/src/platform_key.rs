use std::io::Write;
use std::path::Path;

use domain::api_key::generate_platform_key;

const FILE: &str = "platform-key";

/// The configured key, else the one kept in the data dir, else a new one written there.
/// Says whether it was just generated, so the caller can show it once.
pub fn load_or_create(
    configured: Option<&str>,
    data_dir: &Path,
) -> std::io::Result<(String, bool)> {
    if let Some(key) = configured.filter(|k| !k.is_empty()) {
        return Ok((key.to_string(), false));
    }
    let path = data_dir.join(FILE);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let key = existing.trim();
        if !key.is_empty() {
            return Ok((key.to_string(), false));
        }
    }
    let key = generate_platform_key();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path)?;
    file.write_all(key.as_bytes())?;
    file.write_all(b"\n")?;
    Ok((key, true))
}
