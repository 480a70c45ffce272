//! Lower-case hexadecimal, how binary E2E payloads travel in text lines.

/// Why text is not hexadecimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HexError {
    /// An odd number of digits.
    #[error("odd number of hex digits")]
    OddLength,
    /// A character that is not a hex digit.
    #[error("not a hex digit at position {0}")]
    BadDigit(usize),
}

/// Encodes bytes as lower-case hex.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Decodes hex, either case.
pub fn decode(text: &str) -> Result<Vec<u8>, HexError> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return Err(HexError::OddLength);
    }
    let value = |i: usize| match digits[i] {
        b @ b'0'..=b'9' => Ok(b - b'0'),
        b @ b'a'..=b'f' => Ok(b - b'a' + 10),
        b @ b'A'..=b'F' => Ok(b - b'A' + 10),
        _ => Err(HexError::BadDigit(i)),
    };
    (0..digits.len())
        .step_by(2)
        .map(|i| Ok(value(i)? << 4 | value(i + 1)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_non_hex() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
        assert_eq!(encode(&[0x0f, 0xa0]), "0fa0");
        assert_eq!(decode("0FA0").unwrap(), vec![0x0f, 0xa0]);
        assert_eq!(decode("abc"), Err(HexError::OddLength));
        assert_eq!(decode("0g"), Err(HexError::BadDigit(1)));
        assert_eq!(decode("éé"), Err(HexError::BadDigit(0)));
        assert_eq!(decode("").unwrap(), Vec::<u8>::new());
    }
}
