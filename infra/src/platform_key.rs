use std::io::Write;
use std::path::Path;

use domain::api_key::generate_platform_key;

const FILE: &str = "platform-key";

/// The configured key, else the one kept in the data dir, else a new one written there.
/// Says whether it was just generated, so the caller can show it once.
///
/// A key file that exists but cannot be read, or holds no key, stops the start: writing a
/// new key over it would lock out every producer and console holding the old one, and a
/// permission or disk problem would pass unnoticed.
pub fn load_or_create(
    configured: Option<&str>,
    data_dir: &Path,
) -> std::io::Result<(String, bool)> {
    if let Some(key) = configured.filter(|k| !k.is_empty()) {
        return Ok((key.to_string(), false));
    }
    let path = data_dir.join(FILE);
    let refuse = |why: String| {
        std::io::Error::other(format!(
            "the platform key file {} {why}; it was left as it is (fix or remove it, or pass \
             --platform-key)",
            path.display()
        ))
    };
    match std::fs::read_to_string(&path) {
        Ok(existing) => {
            let key = existing.trim();
            if key.is_empty() {
                return Err(refuse("is empty".into()));
            }
            return Ok((key.to_string(), false));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(refuse(format!("cannot be read: {e}"))),
    }
    let key = generate_platform_key(&app::ports::OsRandom);
    write_new_owner_only(&path, &key)?;
    Ok((key, true))
}

/// Writes `key` and a newline to a new file at `path`, readable by the owner only; never
/// over a file that appeared meanwhile.
pub(crate) fn write_new_owner_only(path: &Path, key: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(key.as_bytes())?;
    file.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_generated_once_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (key, generated) = load_or_create(None, dir.path()).unwrap();
        assert!(generated);
        assert_eq!(load_or_create(None, dir.path()).unwrap(), (key, false));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            load_or_create(Some("whp_given"), dir.path()).unwrap(),
            ("whp_given".to_string(), false)
        );
    }

    #[test]
    fn an_unreadable_or_empty_key_file_stops_the_start_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        // Not UTF-8: unreadable as a key.
        std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        let err = load_or_create(None, dir.path()).unwrap_err().to_string();
        assert!(err.contains("cannot be read"), "{err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            [0xff, 0xfe, 0x00],
            "overwritten"
        );

        std::fs::write(&path, "  \n").unwrap();
        let err = load_or_create(None, dir.path()).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "  \n");

        // A directory where the file should be.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(load_or_create(None, dir.path()).is_err());
    }
}
