//! [`FsBlobStore`]: objects as files under a root directory, written through a temporary file
//! and an atomic rename.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};
use tokio_util::io::ReaderStream;

use crate::key::validate_prefix;
use crate::meter::Meter;
use crate::{
    validate_key, BlobError, BlobObject, BlobStore, ByteRange, ByteStream, PutOptions, PutResult,
    Result, PARTIAL_UPLOAD_AGE, READ_BUF,
};

/// Write buffer in front of the filesystem store's temporary file.
const FS_WRITE_BUF: usize = 256 * 1024;

/// Name of the filesystem store's directory for in-flight uploads, under the root.
const FS_TMP_DIR: &str = ".tmp";

/// Blob store in a local directory: the object `a/b` is the file `<root>/a/b`.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
    tmp: PathBuf,
}

/// Removes a temporary file when dropped, unless disarmed: covers errors and cancellation.
struct TempFileGuard {
    path: Option<PathBuf>,
}

impl TempFileGuard {
    fn disarm(&mut self) {
        self.path = None;
    }
}

impl Drop for TempFileGuard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            if let Err(err) = std::fs::remove_file(&path) {
                if err.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %err, "could not remove temporary blob file");
                }
            }
        }
    }
}

impl FsBlobStore {
    /// Opens (creating if needed) a store rooted at `root`. Temporary files abandoned by a
    /// killed process (not written for [`PARTIAL_UPLOAD_AGE`]) are removed.
    pub fn new(root: PathBuf) -> Result<Self> {
        let tmp = root.join(FS_TMP_DIR);
        std::fs::create_dir_all(&tmp)?;
        let removed = remove_stale_temp_files(&tmp, PARTIAL_UPLOAD_AGE);
        if removed > 0 {
            tracing::info!(removed, "removed abandoned partial uploads");
        }
        Ok(Self { root, tmp })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }
}

/// Remove the files of `tmp` last written more than `older_than` ago; how many were removed. A
/// live upload writes its file continuously, so only abandoned ones are that old.
fn remove_stale_temp_files(tmp: &Path, older_than: Duration) -> u64 {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .ok()
            .filter(std::fs::Metadata::is_file)
            .and_then(|m| m.modified().ok())
            .and_then(|modified| now.duration_since(modified).ok())
            .is_some_and(|age| age > older_than);
        if stale {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => {
                    tracing::warn!(path = %entry.path().display(), error = %err, "could not remove a partial upload");
                }
            }
        }
    }
    removed
}

fn not_found_as<T>(err: io::Error, value: T) -> Result<T> {
    if err.kind() == io::ErrorKind::NotFound {
        Ok(value)
    } else {
        Err(BlobError::Io(err))
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, key: &str, mut body: ByteStream, opts: PutOptions) -> Result<PutResult> {
        let dest = self.path_of(key)?;
        let tmp_path = self
            .tmp
            .join(format!("{}.part", uuid::Uuid::new_v4().simple()));
        // Declared before the file so that it runs after the file is closed.
        let mut guard = TempFileGuard {
            path: Some(tmp_path.clone()),
        };
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true);
        let file = match options.open(&tmp_path).await {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                // The temp dir was removed behind our back: recreate it once.
                tokio::fs::create_dir_all(&self.tmp).await?;
                options.open(&tmp_path).await?
            }
            Err(err) => return Err(err.into()),
        };
        let mut writer = BufWriter::with_capacity(FS_WRITE_BUF, file);
        let mut meter = Meter::new(opts.max_bytes);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(BlobError::Source)?;
            meter.add(&chunk)?;
            writer.write_all(&chunk).await?;
        }
        let result = meter.finish(opts.expected_sha256)?;
        writer.flush().await?;
        let file = writer.into_inner();
        file.sync_all().await?;
        drop(file);

        let parent = dest.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&parent).await?;
        tokio::fs::rename(&tmp_path, &dest).await?;
        guard.disarm();
        // Make the rename durable; not fatal if the platform cannot fsync a directory.
        if let Ok(dir) = tokio::fs::File::open(&parent).await {
            let _ = dir.sync_all().await;
        }
        tracing::debug!(key, size = result.size, "blob stored (fs)");
        Ok(result)
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<BlobObject> {
        let path = self.path_of(key)?;
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(BlobError::NotFound),
            Err(err) => return Err(err.into()),
        };
        let meta = file.metadata().await?;
        if !meta.is_file() {
            return Err(BlobError::NotFound);
        }
        let size = meta.len();
        let Some(range) = range else {
            return Ok(BlobObject {
                size,
                range: None,
                body: Box::pin(ReaderStream::with_capacity(file, READ_BUF)),
            });
        };
        let (first, last) = range.resolve(size)?;
        file.seek(io::SeekFrom::Start(first)).await?;
        let reader = file.take(last - first + 1);
        Ok(BlobObject {
            size,
            range: Some((first, last)),
            body: Box::pin(ReaderStream::with_capacity(reader, READ_BUF)),
        })
    }

    async fn size(&self, key: &str) -> Result<Option<u64>> {
        let path = self.path_of(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            Ok(_) => Ok(None),
            Err(err) => not_found_as(err, None),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(err) => not_found_as(err, ()),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        validate_prefix(prefix)?;
        // Start at the deepest directory the prefix names completely.
        let start_rel = match prefix.rsplit_once('/') {
            Some((dirs, _)) => format!("{dirs}/"),
            None => String::new(),
        };
        let mut keys = Vec::new();
        let mut pending = vec![(self.root.join(&start_rel), start_rel)];
        while let Some((dir, rel)) = pending.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) if err.kind() == io::ErrorKind::NotADirectory => continue,
                Err(err) => return Err(err.into()),
            };
            while let Some(entry) = entries.next_entry().await? {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with('.') {
                    continue; // the temp dir, or something that is not ours
                }
                let key = format!("{rel}{name}");
                let file_type = entry.file_type().await?;
                if file_type.is_dir() {
                    let dir_key = format!("{key}/");
                    if dir_key.starts_with(prefix) || prefix.starts_with(&dir_key) {
                        pending.push((entry.path(), dir_key));
                    }
                } else if file_type.is_file() && key.starts_with(prefix) {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn presign_get(
        &self,
        key: &str,
        _ttl: Duration,
        _filename: &str,
    ) -> Result<Option<String>> {
        validate_key(key)?;
        Ok(None)
    }

    async fn check(&self) -> Result<()> {
        let meta = tokio::fs::metadata(&self.root).await?;
        if !meta.is_dir() {
            return Err(BlobError::Backend(format!(
                "blob root {} is not a directory",
                self.root.display()
            )));
        }
        // Prove the store is writable: create and remove a probe file.
        let probe = self
            .tmp
            .join(format!("probe-{}", uuid::Uuid::new_v4().simple()));
        let guard = TempFileGuard {
            path: Some(probe.clone()),
        };
        tokio::fs::write(&probe, b"ok").await?;
        drop(guard);
        Ok(())
    }

    async fn sweep_partial_uploads(&self, older_than: Duration) -> Result<u64> {
        let tmp = self.tmp.clone();
        tokio::task::spawn_blocking(move || remove_stale_temp_files(&tmp, older_than))
            .await
            .map_err(|e| BlobError::Backend(format!("partial upload sweep: {e}")))
    }

    fn backend(&self) -> &'static str {
        "fs"
    }
}
