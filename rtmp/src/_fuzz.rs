//! Internals for the fuzz targets (feature `_fuzz`). Not public API: no stability, no docs.

use crate::chunk::RawMessage;
use crate::Error;

/// The command name and transaction id of a command message, parsed exactly as the
/// sessions parse what they receive.
pub fn parse_command(msg: &RawMessage) -> Result<(String, f64), Error> {
    let cmd = crate::command::parse_command(msg)?;
    Ok((cmd.name, cmd.transaction_id))
}

/// Whether an onStatus `level`/`code` pair counts as a refusal for the client.
pub fn is_refusal(level: &str, code: &str) -> bool {
    crate::command::is_refusal(level, code)
}
