//! The opening of a fixed newstyle session: the server greeting and the
//! client's answer to it.

use super::proto;

/// Length of the greeting: NBDMAGIC, IHAVEOPT, 16-bit handshake flags.
pub(crate) const GREETING_LEN: usize = 18;

/// What the server sends first. Oldstyle is never offered.
pub(crate) fn greeting() -> [u8; GREETING_LEN] {
    let mut g = [0u8; GREETING_LEN];
    g[0..8].copy_from_slice(&proto::NBD_MAGIC.to_be_bytes());
    g[8..16].copy_from_slice(&proto::IHAVEOPT.to_be_bytes());
    let flags = proto::FLAG_FIXED_NEWSTYLE | proto::FLAG_NO_ZEROES;
    g[16..18].copy_from_slice(&flags.to_be_bytes());
    g
}

/// What the client's flags select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientFlags {
    /// Leave out the 124 zero bytes after NBD_OPT_EXPORT_NAME.
    pub no_zeroes: bool,
}

/// Decode the client flags; None for a flag we did not offer, after which
/// the spec has us drop the connection. A client without
/// NBD_FLAG_C_FIXED_NEWSTYLE is still served fixed newstyle, which the spec
/// allows and which costs an old client nothing.
pub(crate) fn parse_client_flags(raw: u32) -> Option<ClientFlags> {
    let known = proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES;
    if raw & !known != 0 {
        return None;
    }
    Some(ClientFlags {
        no_zeroes: raw & proto::FLAG_C_NO_ZEROES != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_offers_fixed_newstyle_and_no_zeroes() {
        let g = greeting();
        assert_eq!(&g[0..8], b"NBDMAGIC");
        assert_eq!(&g[8..16], b"IHAVEOPT");
        assert_eq!(&g[16..18], &[0, 3]);
    }

    #[test]
    fn unknown_client_flag_is_refused() {
        assert_eq!(parse_client_flags(3), Some(ClientFlags { no_zeroes: true }));
        assert_eq!(
            parse_client_flags(1),
            Some(ClientFlags { no_zeroes: false })
        );
        assert_eq!(parse_client_flags(4), None);
    }
}
