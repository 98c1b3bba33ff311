//! The `file` protocol driver: a host file or block device read with pread/pwrite.
//!
//! With `cache.direct` the file is opened O_DIRECT and unaligned requests go
//! through an aligned bounce buffer. Names `/dev/fdset/N` are opened by the
//! caller-supplied `FdsetOpener` (the monitor owns fd sets).

use std::any::Any;
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::aligned::{AlignedBuf, DIRECT_ALIGN};
use crate::driver::{Children, CopyFrom, CopySource, Driver, Extent, FormatInfo};
use crate::error::{BlockError, BlockResult};

/// Opens a `/dev/fdset/N` name with the given open(2) flags.
pub type FdsetOpener = dyn Fn(&str, i32) -> Result<FdsetFd, BlockError> + Send + Sync;

/// A descriptor an fd set handed out. `hold` lives as long as the node that
/// uses the descriptor: the monitor keeps the set (though emptied by
/// remove-fd) while any such hold is alive, as QEMU counts its duplicates.
pub struct FdsetFd {
    pub fd: OwnedFd,
    pub hold: Option<Arc<dyn Any + Send + Sync>>,
}

impl From<OwnedFd> for FdsetFd {
    fn from(fd: OwnedFd) -> FdsetFd {
        FdsetFd { fd, hold: None }
    }
}

/// `path` names a block or character device (stat follows links): QEMU's
/// protocol probing then picks host_device rather than file.
pub fn is_host_device(path: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| {
        let t = m.file_type();
        t.is_block_device() || t.is_char_device()
    })
}

/// An open host file.
pub struct FileDriver {
    fd: OwnedFd,
    /// Path to reopen with other flags (None for descriptors from fd sets).
    path: Option<String>,
    read_only: bool,
    len: u64,
    direct: bool,
    block_device: bool,
    bounce: AlignedBuf,
    /// The driver name the node was opened with (QEMU's drv of the node).
    name: &'static str,
    /// Keeps the fd set this descriptor came from listed while open.
    _fdset_hold: Option<Arc<dyn Any + Send + Sync>>,
}

/// Copies `len` bytes from `src` at `src_off` to `dst` at `offset` with
/// copy_file_range(2): the kernel moves the data file-to-file, one copy
/// instead of read()+write()'s two. Returns the bytes copied before the
/// source ended or the kernel refused (other file systems, O_DIRECT...), so
/// the caller carries on through a buffer.
fn copy_file_range(
    src: RawFd,
    src_off: u64,
    dst: RawFd,
    offset: u64,
    len: u64,
) -> BlockResult<u64> {
    let mut done = 0u64;
    while done < len {
        let mut off_in = (src_off + done) as libc::loff_t;
        let mut off_out = (offset + done) as libc::loff_t;
        let n = (len - done).min(1 << 30) as usize;
        // SAFETY: both descriptors are open and the offsets are valid
        // out-pointers; the call touches no other memory.
        let r = unsafe { libc::copy_file_range(src, &mut off_in, dst, &mut off_out, n, 0) };
        if r < 0 {
            let e = last_errno();
            match e {
                libc::EINTR => continue,
                libc::EXDEV | libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS | libc::EBADF => {
                    return Ok(done)
                }
                _ => return Err(BlockError::errno("write", e)),
            }
        }
        if r == 0 {
            return Ok(done);
        }
        done += r as u64;
    }
    Ok(done)
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

impl FileDriver {
    /// Opens `path` (QEMU's "Could not open" wording on failure).
    pub fn open(
        path: &str,
        read_only: bool,
        direct: bool,
        fdsets: Option<&FdsetOpener>,
    ) -> BlockResult<FileDriver> {
        Self::open_flags(path, read_only, direct, fdsets, 0)
    }

    /// Opens `path` as QEMU 2.8's `driver` ("file", "host_device" or
    /// "host_cdrom") does: none of them insists on the kind of file;
    /// host_cdrom opens non-blocking (no disc must not fail the open) and
    /// host_device refuses a read-write open of a block device set
    /// read-only (BLKROGET), since writes to it would fail later.
    pub fn open_as(
        driver: &'static str,
        path: &str,
        read_only: bool,
        direct: bool,
        fdsets: Option<&FdsetOpener>,
    ) -> BlockResult<FileDriver> {
        let extra = if driver == "host_cdrom" {
            libc::O_NONBLOCK
        } else {
            0
        };
        let mut f = Self::open_flags(path, read_only, direct, fdsets, extra)?;
        f.name = driver;
        if driver == "host_device" && !read_only && f.block_device && f.blk_read_only()? {
            return Err(BlockError::errno(
                "The device is not writable",
                libc::EACCES,
            ));
        }
        Ok(f)
    }

    /// BLKROGET: the block device is set read-only.
    fn blk_read_only(&self) -> BlockResult<bool> {
        const BLKROGET: libc::c_ulong = 0x125e;
        let mut ro: libc::c_int = 0;
        // SAFETY: BLKROGET writes one int through the pointer, which is valid.
        if unsafe { libc::ioctl(self.raw(), BLKROGET as _, &mut ro) } < 0 {
            return Err(BlockError::errno(
                "The device is not writable",
                last_errno(),
            ));
        }
        Ok(ro != 0)
    }

    fn open_flags(
        path: &str,
        read_only: bool,
        direct: bool,
        fdsets: Option<&FdsetOpener>,
        extra: i32,
    ) -> BlockResult<FileDriver> {
        let mut flags = extra
            | libc::O_CLOEXEC
            | if read_only {
                libc::O_RDONLY
            } else {
                libc::O_RDWR
            };
        if direct {
            flags |= libc::O_DIRECT;
        }
        let path = path.strip_prefix("file:").unwrap_or(path);
        let mut hold = None;
        let fd = if path.starts_with("/dev/fdset/") {
            match fdsets {
                Some(open) => {
                    let got = open(path, flags)?;
                    hold = got.hold;
                    got.fd
                }
                None => {
                    return Err(BlockError::errno(
                        format!("Could not open '{}'", path),
                        libc::ENOENT,
                    ))
                }
            }
        } else {
            let cpath = CString::new(path)
                .map_err(|_| BlockError::InvalidArgument(format!("Could not open '{}'", path)))?;
            // SAFETY: cpath is a valid NUL-terminated string; open has no other inputs.
            let raw = unsafe { libc::open(cpath.as_ptr(), flags, 0o644) };
            if raw < 0 {
                return Err(BlockError::errno(
                    format!("Could not open '{}'", path),
                    last_errno(),
                ));
            }
            // SAFETY: raw is a freshly opened descriptor nobody else owns.
            unsafe { OwnedFd::from_raw_fd(raw) }
        };
        let mut f = Self::from_fd(fd, direct)?;
        f._fdset_hold = hold;
        if !path.starts_with("/dev/fdset/") {
            f.path = Some(path.to_string());
        }
        f.read_only = read_only;
        Ok(f)
    }

    /// Wraps an already open descriptor.
    pub fn from_fd(fd: OwnedFd, direct: bool) -> BlockResult<FileDriver> {
        // SAFETY: an all-zero stat is a valid value for fstat to overwrite.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fd is open and st is a valid out-pointer.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
            return Err(BlockError::errno("Could not stat file", last_errno()));
        }
        let block_device = (st.st_mode & libc::S_IFMT) == libc::S_IFBLK;
        let len = if block_device {
            // SAFETY: lseek on an open fd has no memory effects.
            let end = unsafe { libc::lseek(fd.as_raw_fd(), 0, libc::SEEK_END) };
            if end < 0 {
                return Err(BlockError::errno("Could not get device size", last_errno()));
            }
            end as u64
        } else {
            st.st_size as u64
        };
        Ok(FileDriver {
            fd,
            path: None,
            read_only: false,
            len,
            direct,
            block_device,
            bounce: AlignedBuf::new(0),
            name: if block_device { "host_device" } else { "file" },
            _fdset_hold: None,
        })
    }

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// pread until `buf` is full; bytes past the end of the file read as zero.
    pub(crate) fn pread_full(fd: RawFd, offset: u64, buf: &mut [u8]) -> BlockResult<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let rest = &mut buf[done..];
            // SAFETY: rest is a valid writable region of rest.len() bytes.
            let n = unsafe {
                libc::pread(
                    fd,
                    rest.as_mut_ptr().cast(),
                    rest.len(),
                    (offset + done as u64) as libc::off_t,
                )
            };
            if n < 0 {
                let e = last_errno();
                if e == libc::EINTR {
                    continue;
                }
                return Err(BlockError::errno("read", e));
            }
            if n == 0 {
                rest.fill(0);
                return Ok(());
            }
            done += n as usize;
        }
        Ok(())
    }

    fn pwrite_full(fd: RawFd, offset: u64, buf: &[u8]) -> BlockResult<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let rest = &buf[done..];
            // SAFETY: rest is a valid readable region of rest.len() bytes.
            let n = unsafe {
                libc::pwrite(
                    fd,
                    rest.as_ptr().cast(),
                    rest.len(),
                    (offset + done as u64) as libc::off_t,
                )
            };
            if n < 0 {
                let e = last_errno();
                if e == libc::EINTR {
                    continue;
                }
                return Err(BlockError::errno("write", e));
            }
            if n == 0 {
                return Err(BlockError::errno("write", libc::ENOSPC));
            }
            done += n as usize;
        }
        Ok(())
    }

    fn aligned(&self, offset: u64, ptr: *const u8, len: usize) -> bool {
        !self.direct
            || (offset.is_multiple_of(DIRECT_ALIGN as u64)
                && len.is_multiple_of(DIRECT_ALIGN)
                && (ptr as usize).is_multiple_of(DIRECT_ALIGN))
    }

    fn check_offset(offset: u64, len: usize) -> BlockResult<()> {
        if offset
            .checked_add(len as u64)
            .is_none_or(|e| e > i64::MAX as u64 / 2)
        {
            return Err(BlockError::errno(
                "Request offset out of range",
                libc::EINVAL,
            ));
        }
        Ok(())
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> BlockResult<()> {
        Self::check_offset(offset, buf.len())?;
        if self.aligned(offset, buf.as_ptr(), buf.len()) {
            return Self::pread_full(self.raw(), offset, buf);
        }
        let a = DIRECT_ALIGN as u64;
        let start = offset / a * a;
        let end = (offset + buf.len() as u64).next_multiple_of(a);
        let span = (end - start) as usize;
        self.bounce.ensure(span);
        let fd = self.raw();
        Self::pread_full(fd, start, &mut self.bounce.as_mut_slice()[..span])?;
        let skip = (offset - start) as usize;
        buf.copy_from_slice(&self.bounce.as_slice()[skip..skip + buf.len()]);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> BlockResult<()> {
        Self::check_offset(offset, buf.len())?;
        let end_req = offset + buf.len() as u64;
        if self.aligned(offset, buf.as_ptr(), buf.len()) {
            Self::pwrite_full(self.raw(), offset, buf)?;
        } else {
            let a = DIRECT_ALIGN as u64;
            let start = offset / a * a;
            let end = end_req.next_multiple_of(a);
            let span = (end - start) as usize;
            self.bounce.ensure(span);
            let fd = self.raw();
            let head = (offset - start) as usize;
            if head != 0 || end != end_req {
                Self::pread_full(fd, start, &mut self.bounce.as_mut_slice()[..span])?;
            }
            self.bounce.as_mut_slice()[head..head + buf.len()].copy_from_slice(buf);
            Self::pwrite_full(fd, start, &self.bounce.as_slice()[..span])?;
            if end > end_req && end > self.len && !self.block_device {
                // The aligned write padded past the requested end: cut the padding.
                let keep = end_req.max(self.len);
                self.ftruncate(keep)?;
            }
        }
        if end_req > self.len {
            self.len = end_req;
        }
        Ok(())
    }

    fn ftruncate(&mut self, size: u64) -> BlockResult<()> {
        // SAFETY: ftruncate on an open fd has no memory effects.
        if unsafe { libc::ftruncate(self.raw(), size as libc::off_t) } < 0 {
            return Err(BlockError::errno("Could not resize file", last_errno()));
        }
        self.len = size;
        Ok(())
    }

    fn fallocate(&self, mode: i32, offset: u64, len: u64) -> Result<(), i32> {
        // SAFETY: fallocate on an open fd has no memory effects.
        let r =
            unsafe { libc::fallocate(self.raw(), mode, offset as libc::off_t, len as libc::off_t) };
        if r < 0 {
            Err(last_errno())
        } else {
            Ok(())
        }
    }

    fn write_zero_buffer(&mut self, offset: u64, len: u64) -> BlockResult<()> {
        const CHUNK: usize = 1 << 20;
        let zeros = AlignedBuf::new(CHUNK.min(len as usize));
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(zeros.len() as u64) as usize;
            self.write_at(offset + done, &zeros.as_slice()[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    /// The read+write fallback of `copy_in`.
    fn copy_through_buffer(
        &mut self,
        src: RawFd,
        src_off: u64,
        offset: u64,
        len: u64,
    ) -> BlockResult<()> {
        const CHUNK: u64 = 1 << 20;
        let mut buf = AlignedBuf::new(CHUNK.min(len) as usize);
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK) as usize;
            Self::pread_full(src, src_off + done, &mut buf.as_mut_slice()[..n])?;
            self.write_at(offset + done, &buf.as_slice()[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    fn seek(&self, offset: u64, whence: i32) -> Result<u64, i32> {
        // SAFETY: lseek on an open fd has no memory effects.
        let r = unsafe { libc::lseek(self.raw(), offset as libc::off_t, whence) };
        if r < 0 {
            Err(last_errno())
        } else {
            Ok(r as u64)
        }
    }

    fn sync(&self) -> BlockResult<()> {
        // SAFETY: fdatasync on an open fd has no memory effects.
        if unsafe { libc::fdatasync(self.raw()) } < 0 {
            return Err(BlockError::errno("flush", last_errno()));
        }
        Ok(())
    }
}

impl Driver for FileDriver {
    // QEMU's file protocol answers bdrv_get_info, so its ImageInfo carries a
    // (never set) dirty flag.
    fn format_info(&mut self, _c: &Children) -> FormatInfo {
        // host_cdrom has no bdrv_get_info in QEMU 2.8.
        FormatInfo {
            dirty_flag: (self.name != "host_cdrom").then_some(false),
            ..FormatInfo::default()
        }
    }

    fn format_name(&self) -> &'static str {
        self.name
    }

    fn is_format(&self) -> bool {
        false
    }

    fn length(&mut self, _c: &Children) -> BlockResult<u64> {
        Ok(self.len)
    }

    fn refresh_length(&mut self, _c: &Children) -> BlockResult<u64> {
        if self.block_device {
            return Ok(self.len);
        }
        // SAFETY: an all-zero stat is a valid value for fstat to overwrite.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fd is open and st is a valid out-pointer.
        if unsafe { libc::fstat(self.raw(), &mut st) } < 0 {
            return Err(BlockError::errno("Could not stat file", last_errno()));
        }
        self.len = st.st_size as u64;
        Ok(self.len)
    }

    fn read(&mut self, _c: &Children, offset: u64, buf: &mut [u8]) -> BlockResult<()> {
        self.read_at(offset, buf)
    }

    fn write(&mut self, _c: &Children, offset: u64, buf: &[u8], fua: bool) -> BlockResult<()> {
        self.write_at(offset, buf)?;
        if fua {
            self.sync()?;
        }
        Ok(())
    }

    fn write_zeroes(
        &mut self,
        _c: &Children,
        offset: u64,
        len: u64,
        may_unmap: bool,
    ) -> BlockResult<()> {
        Self::check_offset(offset, len as usize)?;
        if !self.block_device {
            let end = offset + len;
            if may_unmap
                && self
                    .fallocate(
                        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                        offset,
                        len,
                    )
                    .is_ok()
            {
                if end > self.len {
                    self.ftruncate(end)?;
                }
                return Ok(());
            }
            if self
                .fallocate(libc::FALLOC_FL_ZERO_RANGE, offset, len)
                .is_ok()
            {
                if end > self.len {
                    self.len = end;
                }
                return Ok(());
            }
        }
        self.write_zero_buffer(offset, len)
    }

    fn discard(&mut self, _c: &Children, offset: u64, len: u64) -> BlockResult<()> {
        if self.block_device {
            return Ok(());
        }
        // Discard is advisory: file systems without hole punching just keep the data.
        let _ = self.fallocate(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        );
        Ok(())
    }

    fn flush(&mut self, _c: &Children) -> BlockResult<()> {
        self.sync()
    }

    fn block_status(&mut self, _c: &Children, offset: u64, len: u64) -> BlockResult<Extent> {
        let len = len.max(1);
        if self.block_device || offset >= self.len {
            return Ok(Extent::data(len, Some(offset)));
        }
        let max = len.min(self.len - offset);
        match self.seek(offset, libc::SEEK_DATA) {
            Ok(d) if d == offset => {
                let hole = self.seek(offset, libc::SEEK_HOLE).unwrap_or(offset + max);
                let n = hole.saturating_sub(offset).clamp(1, max);
                Ok(Extent::data(n, Some(offset)))
            }
            Ok(d) if d > offset => {
                let n = (d - offset).min(max);
                let mut e = Extent::zero(n);
                e.offset = Some(offset);
                Ok(e)
            }
            Err(libc::ENXIO) => {
                let mut e = Extent::zero(max);
                e.offset = Some(offset);
                Ok(e)
            }
            _ => Ok(Extent::data(max, Some(offset))),
        }
    }

    fn copy_source(
        &mut self,
        c: &Children,
        offset: u64,
        len: u64,
    ) -> BlockResult<(CopySource, u64)> {
        let _ = c;
        if self.direct {
            // O_DIRECT reads need aligned buffers and offsets: the node's own
            // read path has the bounce buffer for that.
            return Ok((CopySource::Unsupported, len));
        }
        // Only SEEK_DATA: on data it answers at once, while SEEK_HOLE walks
        // the page cache up to the next hole (to the end of a full image).
        if !self.block_device && offset < self.len {
            match self.seek(offset, libc::SEEK_DATA) {
                Ok(d) if d > offset => return Ok((CopySource::Zero, (d - offset).min(len))),
                Err(libc::ENXIO) => return Ok((CopySource::Zero, len.min(self.len - offset))),
                _ => {}
            }
        }
        let fd = self
            .fd
            .try_clone()
            .map_err(|e| BlockError::errno("dup", e.raw_os_error().unwrap_or(libc::EIO)))?;
        Ok((CopySource::Host { fd, offset }, len))
    }

    fn can_copy_in(&mut self, _c: &Children, _offset: u64, _len: u64) -> bool {
        !self.read_only
    }

    fn copy_in(
        &mut self,
        _c: &Children,
        offset: u64,
        len: u64,
        src: CopyFrom<'_>,
    ) -> BlockResult<()> {
        Self::check_offset(offset, len as usize)?;
        Self::check_offset(src.offset, len as usize)?;
        let fd: BorrowedFd<'_> = src.fd;
        let sfd = fd.as_raw_fd();
        let done = copy_file_range(sfd, src.offset, self.raw(), offset, len)?;
        if done < len {
            // Refused, or the source ended (the rest reads as zeroes).
            self.copy_through_buffer(sfd, src.offset + done, offset + done, len - done)?;
        }
        let end = offset + len;
        if end > self.len {
            self.len = end;
        }
        Ok(())
    }

    fn truncate(&mut self, _c: &Children, size: u64) -> BlockResult<()> {
        if self.block_device {
            if size > self.len {
                return Err(BlockError::NotPermitted("Cannot grow device files".into()));
            }
            return Ok(());
        }
        self.ftruncate(size)
    }

    fn has_zero_init(&self) -> bool {
        !self.block_device
    }

    fn set_read_only(&mut self, _c: &Children, read_only: bool) -> BlockResult<()> {
        if read_only == self.read_only {
            return Ok(());
        }
        if read_only {
            // Keeping a writable descriptor is harmless; the node refuses writes.
            self.read_only = true;
            return Ok(());
        }
        let path = self.path.clone().ok_or_else(|| {
            BlockError::NotPermitted("Cannot reopen a passed file descriptor read-write".into())
        })?;
        let reopened = FileDriver::open(&path, false, self.direct, None)?;
        self.fd = reopened.fd;
        self.len = reopened.len;
        self.read_only = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpfile(name: &str) -> String {
        let dir = std::env::temp_dir().join(format!("block-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, vec![0u8; 65536]).unwrap();
        p.to_string_lossy().into_owned()
    }

    #[test]
    fn write_then_read_round_trips_and_extends() {
        let p = tmpfile("rt");
        let c = Children::default();
        let mut f = FileDriver::open(&p, false, false, None).unwrap();
        f.write(&c, 70000, b"hello", false).unwrap();
        let mut b = [0u8; 5];
        f.read(&c, 70000, &mut b).unwrap();
        assert_eq!(&b, b"hello");
        assert_eq!(f.length(&c).unwrap(), 70005);
    }

    #[test]
    fn direct_io_handles_unaligned_requests() {
        let p = tmpfile("direct");
        let c = Children::default();
        let mut f = match FileDriver::open(&p, false, true, None) {
            Ok(f) => f,
            Err(_) => return, // file system without O_DIRECT
        };
        f.write(&c, 1000, b"abc", false).unwrap();
        let mut b = [0u8; 3];
        f.read(&c, 1000, &mut b).unwrap();
        assert_eq!(&b, b"abc");
        assert_eq!(f.length(&c).unwrap(), 65536);
    }

    #[test]
    fn missing_file_reports_could_not_open() {
        let e = FileDriver::open("/nonexistent/x.img", true, false, None)
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "Could not open '/nonexistent/x.img': No such file or directory"
        );
    }

    #[test]
    fn fdset_names_go_through_the_opener() {
        let p = tmpfile("fdset");
        let opener: Box<FdsetOpener> = Box::new(move |name: &str, _flags: i32| {
            assert_eq!(name, "/dev/fdset/1");
            let f = std::fs::OpenOptions::new().read(true).open(&p).unwrap();
            Ok(OwnedFd::from(f).into())
        });
        let mut f = FileDriver::open("/dev/fdset/1", true, false, Some(&*opener)).unwrap();
        assert_eq!(f.length(&Children::default()).unwrap(), 65536);
    }
}
