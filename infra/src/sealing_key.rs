use std::path::Path;

use crate::platform_key::write_new_owner_only;
use domain::sealing::Sealer;

const FILE: &str = "sealing-key";

/// The key that seals secrets at rest (see `domain::sealing`): the configured one, else
/// the one kept in the data dir, else a new one written there, owner-only, beside the
/// platform key.
///
/// A key file that exists but cannot be read or holds no valid key stops the start, as a
/// malformed configured key does: a new key would leave every sealed secret unreadable.
pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> std::io::Result<Sealer> {
    if let Some(key) = configured.filter(|k| !k.is_empty()) {
        return Sealer::from_base64(key).map_err(|e| {
            std::io::Error::other(format!("--sealing-key (WEBHOOKS_SEALING_KEY): {e}"))
        });
    }
    let path = data_dir.join(FILE);
    let refuse = |why: String| {
        std::io::Error::other(format!(
            "the sealing key file {} {why}; it was left as it is (restore it, or pass \
             --sealing-key): without it the stored secrets cannot be read",
            path.display()
        ))
    };
    match std::fs::read_to_string(&path) {
        Ok(existing) => return Sealer::from_base64(&existing).map_err(|e| refuse(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(refuse(format!("cannot be read: {e}"))),
    }
    let key = Sealer::generate_key(&app::ports::OsRandom);
    write_new_owner_only(&path, &key)?;
    Sealer::from_base64(&key).map_err(|e| std::io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_generated_once_owner_only_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(None, dir.path()).unwrap();
        let sealed = first.seal("secret", "place", &app::ports::OsRandom);
        let again = load_or_create(None, dir.path()).unwrap();
        assert_eq!(again.open(&sealed, "place").unwrap(), "secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_bad_key_file_or_configured_key_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "not a key\n").unwrap();
        let err = load_or_create(None, dir.path()).unwrap_err().to_string();
        assert!(err.contains("left as it is"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FILE)).unwrap(),
            "not a key\n"
        );
        let err = load_or_create(Some("c2hvcnQ="), dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("WEBHOOKS_SEALING_KEY"), "{err}");
    }
}
