//! A short hex dump of bad bytes, carried by parse errors.

use std::fmt;

/// The most bytes a [`HexDump`] keeps.
pub const HEX_DUMP_MAX: usize = 16;

/// Up to [`HEX_DUMP_MAX`] bytes, shown as hex in error messages, so an operator
/// can find the offending packet in a capture.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct HexDump {
    bytes: [u8; HEX_DUMP_MAX],
    len: u8,
    truncated: bool,
}

impl HexDump {
    /// Keeps the first [`HEX_DUMP_MAX`] bytes of `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        let len = bytes.len().min(HEX_DUMP_MAX);
        let mut kept = [0u8; HEX_DUMP_MAX];
        kept[..len].copy_from_slice(&bytes[..len]);
        HexDump {
            bytes: kept,
            len: len as u8,
            truncated: bytes.len() > HEX_DUMP_MAX,
        }
    }

    /// The kept bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Display for HexDump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.as_bytes().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        if self.truncated {
            f.write_str(" ..")?;
        }
        Ok(())
    }
}

impl fmt::Debug for HexDump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{self}]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_formats() {
        assert_eq!(HexDump::new(&[0xAB, 0x01]).to_string(), "ab 01");
        let long = HexDump::new(&[0u8; 40]);
        assert_eq!(long.as_bytes().len(), HEX_DUMP_MAX);
        assert!(long.to_string().ends_with(" .."));
        assert_eq!(HexDump::new(&[]).to_string(), "");
    }
}
