//! Gzip files read whole: every member of a multi-member file (`cat a.gz b.gz` is valid
//! gzip), each checked against its checksum, and anything after the last member refused
//! (it is not part of the data, and accepting it would hide a damaged or concatenated file).

use std::io::{BufRead, Read};

use flate2::bufread::GzDecoder;

/// The error a [`Members`] stream gives for bytes after its last member.
#[derive(Debug)]
pub(super) struct TrailingBytes;

impl std::fmt::Display for TrailingBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bytes that are not a gzip member follow the last member")
    }
}

impl std::error::Error for TrailingBytes {}

/// Whether `e` is the error of bytes after the last member.
pub(super) fn is_trailing(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<TrailingBytes>())
}

/// The decompressed bytes of every member of the gzip stream `r`, in order.
pub(super) struct Members<R: BufRead> {
    member: Option<GzDecoder<R>>,
}

impl<R: BufRead> Members<R> {
    pub(super) fn new(r: R) -> Self {
        Members {
            member: Some(GzDecoder::new(r)),
        }
    }
}

impl<R: BufRead> Read for Members<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(member) = self.member.as_mut() else {
                return Ok(0);
            };
            let n = member.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            // This member ended (its checksum checked): another member, the end, or junk.
            let mut rest = self.member.take().map(GzDecoder::into_inner).into_iter();
            let Some(mut inner) = rest.next() else {
                return Ok(0);
            };
            let next = inner.fill_buf()?;
            if next.is_empty() {
                return Ok(0);
            }
            if !next.starts_with(&[0x1f, 0x8b]) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    TrailingBytes,
                ));
            }
            self.member = Some(GzDecoder::new(inner));
        }
    }
}
