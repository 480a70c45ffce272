//! Reading and writing the length-prefixed binary fields of signed datagrams and E2E payloads.
//! All integers are big-endian.

/// The bytes end before a field does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Truncated;

/// A field is too long for its length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLong;

/// A cursor over received bytes.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    /// Bytes read so far.
    pub(crate) fn position(&self) -> usize {
        self.at
    }

    /// Whether every byte has been read.
    pub(crate) fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        let end = self.at.checked_add(n).ok_or(Truncated)?;
        let slice = self.bytes.get(self.at..end).ok_or(Truncated)?;
        self.at = end;
        Ok(slice)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Truncated> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Truncated> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Truncated> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A field with a one-byte length.
    pub(crate) fn short(&mut self) -> Result<&'a [u8], Truncated> {
        let len = self.u8()?;
        self.take(usize::from(len))
    }

    /// A field with a two-byte length.
    pub(crate) fn sized(&mut self) -> Result<&'a [u8], Truncated> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }
}

/// Appends a field with a one-byte length.
pub(crate) fn put_short(out: &mut Vec<u8>, field: &[u8]) -> Result<(), TooLong> {
    let len = u8::try_from(field.len()).map_err(|_| TooLong)?;
    out.push(len);
    out.extend_from_slice(field);
    Ok(())
}

/// Appends a field with a two-byte length.
pub(crate) fn put_sized(out: &mut Vec<u8>, field: &[u8]) -> Result<(), TooLong> {
    let len = u16::try_from(field.len()).map_err(|_| TooLong)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
    Ok(())
}
