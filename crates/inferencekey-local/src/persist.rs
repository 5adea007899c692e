//! The optional state file: projects, tokens and workloads as one JSON document,
//! replaced atomically (temporary file in the same directory, fsync, rename) so a crash
//! never leaves a half-written file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use inferencekey_core::wire::Workload;
use serde::{Deserialize, Serialize};

use crate::credentials::TokenRecord;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredProject {
    pub(crate) id: String,
    pub(crate) slug: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    #[serde(default)]
    pub(crate) projects: Vec<StoredProject>,
    #[serde(default)]
    pub(crate) tokens: Vec<TokenRecord>,
    #[serde(default)]
    pub(crate) workloads: Vec<Workload>,
}

/// Writes snapshots to one path, newest last, never two at once.
#[derive(Debug)]
pub(crate) struct StateFile {
    path: PathBuf,
    /// The generation of the last snapshot written, so a slower writer holding an
    /// older snapshot does not overwrite a newer one.
    written: Mutex<u64>,
}

impl StateFile {
    pub(crate) fn new(path: PathBuf) -> Self {
        StateFile {
            path,
            written: Mutex::new(0),
        }
    }

    /// The stored snapshot, or `None` when the file does not exist yet.
    pub(crate) fn load(&self) -> std::io::Result<Option<Snapshot>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("state file {} is not valid: {e}", self.path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn save(&self, generation: u64, snapshot: &Snapshot) -> std::io::Result<()> {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if generation < *written {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(snapshot)?;
        write_atomically(&self.path, &bytes)?;
        *written = generation;
        Ok(())
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        crate::credentials::random_hex(4)
    ));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        #[cfg(unix)]
        if let Ok(d) = std::fs::File::open(&dir) {
            // Makes the rename itself durable; failure here loses nothing already written.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
