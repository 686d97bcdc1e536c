//! The agent's token, read from a file before every call, so a token that
//! an orchestrator rotates in place (or replaces by rename) is picked up
//! without a restart.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read token_file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token_file {path} is empty")]
    Empty { path: PathBuf },
}

/// A token file and the last token read from it.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    last: Mutex<String>,
}

impl TokenFile {
    /// Reads the file once; a missing or empty file at startup is a
    /// configuration mistake.
    pub fn open(path: &Path) -> Result<TokenFile, Error> {
        let token = read(path)?;
        Ok(TokenFile {
            path: path.to_path_buf(),
            last: Mutex::new(token),
        })
    }

    /// The token in the file now. While the file is missing or empty (an
    /// orchestrator in the middle of replacing it), the last token read.
    pub fn current(&self) -> String {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match read(&self.path) {
            Ok(token) => {
                if token != *last {
                    tracing::info!(path = %self.path.display(), "token file changed; using the new token");
                    *last = token;
                }
            }
            Err(e) => tracing::warn!("{e}; using the last token read"),
        }
        last.clone()
    }
}

fn read(path: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_read_again_and_a_vanished_one_keeps_the_last_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        assert!(TokenFile::open(&path).is_err());
        std::fs::write(&path, "").unwrap();
        assert!(matches!(TokenFile::open(&path), Err(Error::Empty { .. })));
        std::fs::write(&path, "first\n").unwrap();
        let token = TokenFile::open(&path).unwrap();
        assert_eq!(token.current(), "first");
        std::fs::write(&path, "second").unwrap();
        assert_eq!(token.current(), "second");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(token.current(), "second");
    }
}
