//! What the fuzz targets share.

/// Splits `bytes` at the fuzzer's points, each taken from what is left (empty pieces
/// included): the same input fed in different reads.
pub fn pieces<'a>(bytes: &'a [u8], splits: &[u16]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(splits.len() + 1);
    let mut rest = bytes;
    for &s in splits {
        let (a, b) = rest.split_at(usize::from(s).min(rest.len()));
        out.push(a);
        rest = b;
    }
    out.push(rest);
    out
}
