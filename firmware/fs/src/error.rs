//! The fs layer's error type: every failure carries the errno ext4 would give.

use ingot_pool::store::StoreError;

/// Why an fs operation failed. [`FsError::errno`] gives the errno to return to the caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// No such file or directory (`ENOENT`).
    #[error("not found: {0}")]
    NotFound(String),
    /// The name exists already (`EEXIST`).
    #[error("already exists: {0}")]
    Exists(String),
    /// The directory is not empty (`ENOTEMPTY`).
    #[error("directory {0} is not empty")]
    NotEmpty(u64),
    /// A directory where a non-directory was needed (`EISDIR`).
    #[error("inode {0} is a directory")]
    IsDir(u64),
    /// A non-directory where a directory was needed (`ENOTDIR`).
    #[error("inode {0} is not a directory")]
    NotDir(u64),
    /// A name longer than 255 bytes, or a symlink target longer than 4095 (`ENAMETOOLONG`).
    #[error("name too long: {0} bytes")]
    NameTooLong(usize),
    /// Too many hard links (`EMLINK`).
    #[error("inode {0} has too many links")]
    TooManyLinks(u64),
    /// Operation not permitted (`EPERM`).
    #[error("operation not permitted: {0}")]
    NotPermitted(String),
    /// Invalid argument (`EINVAL`).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// Unsupported operation or mode (`EOPNOTSUPP`).
    #[error("not supported: {0}")]
    NotSupported(String),
    /// The xattr does not exist (`ENODATA`).
    #[error("no such attribute: {0}")]
    NoData(String),
    /// The caller's buffer is too small (`ERANGE`).
    #[error("result of {needed} bytes does not fit in {given}")]
    Range {
        /// Bytes needed.
        needed: usize,
        /// Bytes offered.
        given: usize,
    },
    /// An offset or size past the largest file (`EFBIG`).
    #[error("file too big: {0} bytes")]
    FileTooBig(u64),
    /// Unknown file handle (`EBADF`).
    #[error("bad file handle {0}")]
    BadHandle(u64),
    /// No such device: fallocate on a non-regular file (`ENODEV`).
    #[error("operation not valid on inode {0}")]
    NoDevice(u64),
    /// No space left (`ENOSPC`).
    #[error("no space left on the pool")]
    NoSpace,
    /// Read-only filesystem (`EROFS`).
    #[error("read-only filesystem: {0}")]
    ReadOnly(String),
    /// Corrupt metadata or unreadable data (`EIO`).
    #[error("corrupt metadata in object {id}: {detail}")]
    Corrupt {
        /// The object.
        id: u64,
        /// What was wrong.
        detail: String,
    },
    /// An I/O error below (`EIO`).
    #[error("I/O error: {0}")]
    Io(String),
    /// The pool is locked (`EACCES`).
    #[error("pool is locked")]
    Locked,
}

impl FsError {
    /// The errno for this error, as ext4 would return it.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound(_) => libc::ENOENT,
            FsError::Exists(_) => libc::EEXIST,
            FsError::NotEmpty(_) => libc::ENOTEMPTY,
            FsError::IsDir(_) => libc::EISDIR,
            FsError::NotDir(_) => libc::ENOTDIR,
            FsError::NameTooLong(_) => libc::ENAMETOOLONG,
            FsError::TooManyLinks(_) => libc::EMLINK,
            FsError::NotPermitted(_) => libc::EPERM,
            FsError::Invalid(_) => libc::EINVAL,
            FsError::NotSupported(_) => libc::EOPNOTSUPP,
            FsError::NoData(_) => libc::ENODATA,
            FsError::Range { .. } => libc::ERANGE,
            FsError::FileTooBig(_) => libc::EFBIG,
            FsError::BadHandle(_) => libc::EBADF,
            FsError::NoDevice(_) => libc::ENODEV,
            FsError::NoSpace => libc::ENOSPC,
            FsError::ReadOnly(_) => libc::EROFS,
            FsError::Corrupt { .. } | FsError::Io(_) => libc::EIO,
            FsError::Locked => libc::EACCES,
        }
    }
}

impl From<StoreError> for FsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { id } => FsError::NotFound(format!("object {id}")),
            StoreError::Exists { id } => FsError::Io(format!("object {id} exists already")),
            StoreError::Invalid { what } => FsError::Invalid(what),
            StoreError::NoSpace => FsError::NoSpace,
            StoreError::ReadOnly { reason } => FsError::ReadOnly(reason),
            StoreError::Locked => FsError::Locked,
            StoreError::Corrupt { id, offset, detail } => FsError::Corrupt {
                id,
                detail: format!("at offset {offset}: {detail}"),
            },
            StoreError::Io { detail } => FsError::Io(detail),
            other => FsError::Io(other.to_string()),
        }
    }
}

/// Result of an fs operation.
pub type FsResult<T> = Result<T, FsError>;
