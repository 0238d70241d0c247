//! Unsigned LEB128, the integer encoding of every length and count on the wire.

/// Append `value` as unsigned LEB128.
pub(crate) fn put(buf: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            buf.push(byte);
            return;
        }
        buf.push(byte | 0x80);
    }
}

/// Bytes [`put`] writes for `value`.
pub(crate) fn len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Why a varint could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// Input ended inside the number.
    Truncated,
    /// More than 64 bits, or a non-minimal encoding (a trailing zero group).
    Invalid,
}

/// Read one unsigned LEB128 number from the front of `input`; returns it and the bytes used.
///
/// Non-minimal encodings are refused so that every value has exactly one encoding, which keeps
/// round-trip properties exact and closes a trivial way to pad frames.
pub(crate) fn get(input: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut value: u64 = 0;
    for (i, &byte) in input.iter().enumerate() {
        if i == 9 && byte > 1 {
            return Err(VarintError::Invalid);
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(VarintError::Invalid);
            }
            return Ok((value, i + 1));
        }
        if i == 9 {
            return Err(VarintError::Invalid);
        }
    }
    Err(VarintError::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(v in any::<u64>()) {
            let mut buf = Vec::new();
            put(&mut buf, v);
            prop_assert_eq!(buf.len(), len(v));
            prop_assert_eq!(get(&buf), Ok((v, buf.len())));
        }

        #[test]
        fn every_prefix_is_truncated(v in 128u64..) {
            let mut buf = Vec::new();
            put(&mut buf, v);
            for cut in 0..buf.len() {
                prop_assert_eq!(get(&buf[..cut]), Err(VarintError::Truncated));
            }
        }
    }

    #[test]
    fn refuses_overflow_and_overlong() {
        assert_eq!(get(&[0xff; 10]), Err(VarintError::Invalid));
        assert_eq!(
            get(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            Err(VarintError::Invalid)
        );
        assert_eq!(get(&[0x80, 0x00]), Err(VarintError::Invalid));
        assert_eq!(
            get(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Ok((u64::MAX, 10))
        );
        assert_eq!(get(&[0x00]), Ok((0, 1)));
    }
}
