//! Option haggling: decoding one client option and queueing the server's
//! replies. Pure protocol logic over the export table; the connection state
//! machine (`client`) decides when an option is complete.

use std::collections::BTreeMap;

use super::export::{with_backend, ExportResolver, NbdExport};
use super::iobuf::OutputBuffer;
use super::proto;

/// Option data we are willing to hold; anything longer is skipped unread.
/// The largest legitimate option is a meta-context request with a few
/// queries of at most 4 KiB each.
pub(crate) const MAX_OPTION_DATA: usize = 64 * 1024;

/// Length of the option header: IHAVEOPT, option, length.
pub(crate) const OPTION_HEADER_LEN: usize = 16;

/// Decoded option header; None when the magic is wrong.
pub(crate) fn parse_option_header(b: &[u8]) -> Option<(u32, u32)> {
    let magic = u64::from_be_bytes(b.get(0..8)?.try_into().ok()?);
    if magic != proto::IHAVEOPT {
        return None;
    }
    let opt = u32::from_be_bytes(b.get(8..12)?.try_into().ok()?);
    let len = u32::from_be_bytes(b.get(12..16)?.try_into().ok()?);
    Some((opt, len))
}

/// Options this server understands (STARTTLS is understood and refused).
pub(crate) fn is_known(opt: u32) -> bool {
    matches!(
        opt,
        proto::OPT_EXPORT_NAME
            | proto::OPT_ABORT
            | proto::OPT_LIST
            | proto::OPT_STARTTLS
            | proto::OPT_INFO
            | proto::OPT_GO
            | proto::OPT_STRUCTURED_REPLY
            | proto::OPT_LIST_META_CONTEXT
            | proto::OPT_SET_META_CONTEXT
    )
}

/// State negotiated so far.
#[derive(Debug, Default)]
pub(crate) struct Negotiation {
    pub no_zeroes: bool,
    pub structured: bool,
    /// Export for which `base:allocation` was selected by the last
    /// NBD_OPT_SET_META_CONTEXT.
    pub meta_export: Option<String>,
}

/// Everything the transmission phase needs about the chosen export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selected {
    pub export: String,
    pub backend: String,
    pub size: u64,
    pub writable: bool,
    pub flags: u16,
    pub structured: bool,
    /// Context id of `base:allocation`, when selected for this export.
    pub meta_context: Option<u32>,
}

/// What the connection does after an option.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OptionOutcome {
    /// Wait for the next option.
    Continue,
    /// Replies are queued; the transmission phase starts.
    Transmission(Selected),
    /// Send what is queued, then close (NBD_OPT_ABORT).
    Finish,
    /// Close without a reply (a failed NBD_OPT_EXPORT_NAME).
    Drop,
}

/// Context id given to `base:allocation` by NBD_OPT_SET_META_CONTEXT.
pub(crate) const BASE_ALLOCATION_ID: u32 = 1;

/// Queue one option reply.
pub(crate) fn reply(out: &mut OutputBuffer, opt: u32, typ: u32, data: &[u8]) {
    let mut h = [0u8; 20];
    h[0..8].copy_from_slice(&proto::OPTION_REPLY_MAGIC.to_be_bytes());
    h[8..12].copy_from_slice(&opt.to_be_bytes());
    h[12..16].copy_from_slice(&typ.to_be_bytes());
    // Every reply we build is far below 4 GiB.
    h[16..20].copy_from_slice(&(data.len() as u32).to_be_bytes());
    out.push(&h);
    out.push(data);
}

/// Queue an error reply with a message for the user.
pub(crate) fn reply_error(out: &mut OutputBuffer, opt: u32, typ: u32, msg: &str) {
    let msg = &msg.as_bytes()[..msg.len().min(proto::MAX_STRING)];
    reply(out, opt, typ, msg);
}

/// Transmission flags for an export: every command we implement, read-only
/// when not writable. CAN_MULTI_CONN is safe to promise: every connection
/// is served by this one process through the same block backend (one
/// cache), so a write completed on one connection is seen by reads on all
/// others, and FLUSH is global (it flushes the backend, covering writes
/// made through every connection), as the flag requires. Clients such as
/// nbdcopy then open several connections.
pub(crate) fn transmission_flags(export: &NbdExport, structured: bool) -> u16 {
    let mut flags = proto::FLAG_HAS_FLAGS
        | proto::FLAG_SEND_FLUSH
        | proto::FLAG_SEND_FUA
        | proto::FLAG_SEND_TRIM
        | proto::FLAG_SEND_WRITE_ZEROES
        | proto::FLAG_SEND_CACHE
        | proto::FLAG_CAN_MULTI_CONN;
    if !export.writable {
        flags |= proto::FLAG_READ_ONLY;
    }
    if structured {
        flags |= proto::FLAG_SEND_DF;
    }
    flags
}

/// Handle one complete option. `data` is its payload (at most
/// MAX_OPTION_DATA bytes).
pub(crate) fn handle_option(
    opt: u32,
    data: &[u8],
    exports: &BTreeMap<String, NbdExport>,
    resolver: &mut dyn ExportResolver,
    neg: &mut Negotiation,
    out: &mut OutputBuffer,
) -> OptionOutcome {
    match opt {
        proto::OPT_EXPORT_NAME => export_name(data, exports, resolver, neg, out),
        proto::OPT_ABORT => {
            reply(out, opt, proto::REP_ACK, &[]);
            OptionOutcome::Finish
        }
        proto::OPT_LIST => {
            if !data.is_empty() {
                reply_error(
                    out,
                    opt,
                    proto::REP_ERR_INVALID,
                    "NBD_OPT_LIST must have no data",
                );
                return OptionOutcome::Continue;
            }
            for e in exports.values() {
                let mut d = Vec::with_capacity(4 + e.name.len() + e.description.len());
                d.extend_from_slice(&(e.name.len() as u32).to_be_bytes());
                d.extend_from_slice(e.name.as_bytes());
                d.extend_from_slice(e.description.as_bytes());
                reply(out, opt, proto::REP_SERVER, &d);
            }
            reply(out, opt, proto::REP_ACK, &[]);
            OptionOutcome::Continue
        }
        proto::OPT_STARTTLS => {
            reply_error(out, opt, proto::REP_ERR_POLICY, "TLS not configured");
            OptionOutcome::Continue
        }
        proto::OPT_STRUCTURED_REPLY => {
            if !data.is_empty() {
                reply_error(
                    out,
                    opt,
                    proto::REP_ERR_INVALID,
                    "NBD_OPT_STRUCTURED_REPLY must have no data",
                );
            } else if neg.structured {
                reply_error(
                    out,
                    opt,
                    proto::REP_ERR_INVALID,
                    "structured reply already negotiated",
                );
            } else {
                neg.structured = true;
                reply(out, opt, proto::REP_ACK, &[]);
            }
            OptionOutcome::Continue
        }
        proto::OPT_INFO | proto::OPT_GO => info_or_go(opt, data, exports, resolver, neg, out),
        proto::OPT_LIST_META_CONTEXT | proto::OPT_SET_META_CONTEXT => {
            meta_context(opt, data, exports, neg, out);
            OptionOutcome::Continue
        }
        _ => {
            reply_error(
                out,
                opt,
                proto::REP_ERR_UNSUP,
                &format!("Unsupported option {opt}"),
            );
            OptionOutcome::Continue
        }
    }
}

/// Export and its current size, if the export exists and its backend is there.
fn lookup(
    name: &str,
    exports: &BTreeMap<String, NbdExport>,
    resolver: &mut dyn ExportResolver,
) -> Option<(NbdExport, u64)> {
    let e = exports.get(name)?;
    let size = with_backend(resolver, &e.backend, |b| b.size())?;
    Some((e.clone(), size))
}

fn selected(export: NbdExport, size: u64, neg: &Negotiation) -> Selected {
    let meta = neg.structured && neg.meta_export.as_deref() == Some(export.name.as_str());
    Selected {
        flags: transmission_flags(&export, neg.structured),
        export: export.name,
        backend: export.backend,
        size,
        writable: export.writable,
        structured: neg.structured,
        meta_context: meta.then_some(BASE_ALLOCATION_ID),
    }
}

fn export_name(
    data: &[u8],
    exports: &BTreeMap<String, NbdExport>,
    resolver: &mut dyn ExportResolver,
    neg: &Negotiation,
    out: &mut OutputBuffer,
) -> OptionOutcome {
    let Ok(name) = std::str::from_utf8(data) else {
        return OptionOutcome::Drop;
    };
    let Some((export, size)) = lookup(name, exports, resolver) else {
        // This option has no way to report an error: the spec has us hang up.
        return OptionOutcome::Drop;
    };
    let sel = selected(export, size, neg);
    out.push(&size.to_be_bytes());
    out.push(&sel.flags.to_be_bytes());
    if !neg.no_zeroes {
        out.push(&[0u8; 124]);
    }
    OptionOutcome::Transmission(sel)
}

/// Splits option data into length-prefixed fields, failing on any overrun.
struct Fields<'a> {
    data: &'a [u8],
}

impl<'a> Fields<'a> {
    fn u16(&mut self) -> Option<u16> {
        let (h, t) = self.data.split_at_checked(2)?;
        self.data = t;
        Some(u16::from_be_bytes([h[0], h[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        let (h, t) = self.data.split_at_checked(4)?;
        self.data = t;
        Some(u32::from_be_bytes([h[0], h[1], h[2], h[3]]))
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (h, t) = self.data.split_at_checked(n)?;
        self.data = t;
        Some(h)
    }

    /// A u32-length-prefixed UTF-8 string of at most MAX_STRING bytes.
    fn string(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        if n > proto::MAX_STRING {
            return None;
        }
        std::str::from_utf8(self.bytes(n)?).ok()
    }
}

fn info_or_go(
    opt: u32,
    data: &[u8],
    exports: &BTreeMap<String, NbdExport>,
    resolver: &mut dyn ExportResolver,
    neg: &Negotiation,
    out: &mut OutputBuffer,
) -> OptionOutcome {
    let mut f = Fields { data };
    let parsed = (|| {
        let name = f.string()?;
        let n = f.u16()? as usize;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(f.u16()?);
        }
        f.data.is_empty().then_some((name, items))
    })();
    let Some((name, items)) = parsed else {
        reply_error(
            out,
            opt,
            proto::REP_ERR_INVALID,
            "malformed NBD_OPT_INFO/NBD_OPT_GO request",
        );
        return OptionOutcome::Continue;
    };
    let Some((export, size)) = lookup(name, exports, resolver) else {
        reply_error(
            out,
            opt,
            proto::REP_ERR_UNKNOWN,
            &format!("export '{name}' not present"),
        );
        return OptionOutcome::Continue;
    };
    if items.contains(&proto::INFO_NAME) {
        info(out, opt, proto::INFO_NAME, export.name.as_bytes());
    }
    if items.contains(&proto::INFO_DESCRIPTION) && !export.description.is_empty() {
        info(
            out,
            opt,
            proto::INFO_DESCRIPTION,
            export.description.as_bytes(),
        );
    }
    // Sent even unasked: these are the spec's defaults, so a client that
    // ignores them breaks nothing.
    let mut bs = [0u8; 12];
    bs[0..4].copy_from_slice(&proto::MIN_BLOCK.to_be_bytes());
    bs[4..8].copy_from_slice(&proto::PREFERRED_BLOCK.to_be_bytes());
    bs[8..12].copy_from_slice(&proto::MAX_PAYLOAD.to_be_bytes());
    info(out, opt, proto::INFO_BLOCK_SIZE, &bs);
    let sel = selected(export, size, neg);
    let mut ex = [0u8; 10];
    ex[0..8].copy_from_slice(&size.to_be_bytes());
    ex[8..10].copy_from_slice(&sel.flags.to_be_bytes());
    info(out, opt, proto::INFO_EXPORT, &ex);
    reply(out, opt, proto::REP_ACK, &[]);
    if opt == proto::OPT_GO {
        OptionOutcome::Transmission(sel)
    } else {
        OptionOutcome::Continue
    }
}

fn info(out: &mut OutputBuffer, opt: u32, typ: u16, payload: &[u8]) {
    let mut d = Vec::with_capacity(2 + payload.len());
    d.extend_from_slice(&typ.to_be_bytes());
    d.extend_from_slice(payload);
    reply(out, opt, proto::REP_INFO, &d);
}

fn meta_context(
    opt: u32,
    data: &[u8],
    exports: &BTreeMap<String, NbdExport>,
    neg: &mut Negotiation,
    out: &mut OutputBuffer,
) {
    let set = opt == proto::OPT_SET_META_CONTEXT;
    if set {
        // A SET replaces the previous selection even when it fails.
        neg.meta_export = None;
    }
    if !neg.structured {
        reply_error(
            out,
            opt,
            proto::REP_ERR_INVALID,
            "structured replies not negotiated",
        );
        return;
    }
    let mut f = Fields { data };
    let parsed = (|| {
        let name = f.string()?;
        let n = f.u32()?;
        let mut queries = Vec::new();
        for _ in 0..n {
            queries.push(f.string()?);
        }
        f.data.is_empty().then_some((name, queries))
    })();
    let Some((name, queries)) = parsed else {
        reply_error(
            out,
            opt,
            proto::REP_ERR_INVALID,
            "malformed meta context request",
        );
        return;
    };
    if !exports.contains_key(name) {
        reply_error(
            out,
            opt,
            proto::REP_ERR_UNKNOWN,
            &format!("export '{name}' not present"),
        );
        return;
    }
    let matches = |q: &&str| *q == proto::BASE_ALLOCATION || (!set && *q == "base:");
    let selected = if queries.is_empty() {
        !set
    } else {
        queries.iter().any(matches)
    };
    if selected {
        let id = if set { BASE_ALLOCATION_ID } else { 0 };
        let mut d = Vec::with_capacity(4 + proto::BASE_ALLOCATION.len());
        d.extend_from_slice(&id.to_be_bytes());
        d.extend_from_slice(proto::BASE_ALLOCATION.as_bytes());
        reply(out, opt, proto::REP_META_CONTEXT, &d);
        if set {
            neg.meta_export = Some(name.to_string());
        }
    }
    reply(out, opt, proto::REP_ACK, &[]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nbd::memory_backend::Memory;

    fn table() -> BTreeMap<String, NbdExport> {
        let e = NbdExport {
            name: "d".into(),
            backend: "d".into(),
            description: "desc".into(),
            writable: false,
        };
        BTreeMap::from([("d".to_string(), e)])
    }

    /// Run one option; returns its outcome and the replies as (type, data).
    fn run(opt: u32, data: &[u8], neg: &mut Negotiation) -> (OptionOutcome, Vec<(u32, Vec<u8>)>) {
        let mut out = OutputBuffer::default();
        let outcome = handle_option(
            opt,
            data,
            &table(),
            &mut Memory(vec![0; 8192]),
            neg,
            &mut out,
        );
        let mut wire = Vec::new();
        let _ = out.write_to(&mut wire);
        let mut replies = Vec::new();
        let mut rest = &wire[..];
        while rest.len() >= 20 {
            let typ = u32::from_be_bytes([rest[12], rest[13], rest[14], rest[15]]);
            let len = u32::from_be_bytes([rest[16], rest[17], rest[18], rest[19]]) as usize;
            replies.push((typ, rest[20..20 + len].to_vec()));
            rest = &rest[20 + len..];
        }
        (outcome, replies)
    }

    fn go_request(name: &str, items: &[u16]) -> Vec<u8> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&(items.len() as u16).to_be_bytes());
        for i in items {
            d.extend_from_slice(&i.to_be_bytes());
        }
        d
    }

    #[test]
    fn go_replies_with_requested_info_then_enters_transmission() {
        let mut neg = Negotiation::default();
        let req = go_request(
            "d",
            &[
                proto::INFO_NAME,
                proto::INFO_DESCRIPTION,
                proto::INFO_BLOCK_SIZE,
            ],
        );

        let (outcome, replies) = run(proto::OPT_GO, &req, &mut neg);

        let types: Vec<u16> = replies[..4]
            .iter()
            .map(|(_, d)| u16::from_be_bytes([d[0], d[1]]))
            .collect();
        assert_eq!(
            types,
            [
                proto::INFO_NAME,
                proto::INFO_DESCRIPTION,
                proto::INFO_BLOCK_SIZE,
                proto::INFO_EXPORT
            ]
        );
        assert_eq!(&replies[1].1[2..], b"desc");
        assert_eq!(&replies[2].1[2..], &[0, 0, 0, 1, 0, 0, 16, 0, 2, 0, 0, 0]);
        assert_eq!(&replies[3].1[2..10], &8192u64.to_be_bytes());
        assert_eq!(replies[4], (proto::REP_ACK, vec![]));
        let OptionOutcome::Transmission(sel) = outcome else {
            panic!("not in transmission")
        };
        assert_eq!(
            (sel.size, sel.writable, sel.meta_context),
            (8192, false, None)
        );
        assert_eq!(sel.flags & proto::FLAG_READ_ONLY, proto::FLAG_READ_ONLY);
    }

    #[test]
    fn info_with_a_name_longer_than_the_data_is_invalid() {
        let mut neg = Negotiation::default();

        let (outcome, replies) = run(proto::OPT_INFO, &[0, 0, 0, 9, b'd', 0, 0], &mut neg);

        assert_eq!(outcome, OptionOutcome::Continue);
        assert_eq!(replies[0].0, proto::REP_ERR_INVALID);
    }

    #[test]
    fn set_meta_context_selects_base_allocation_for_that_export_only() {
        let mut neg = Negotiation {
            structured: true,
            ..Default::default()
        };
        let mut req = 1u32.to_be_bytes().to_vec();
        req.push(b'd');
        req.extend_from_slice(&2u32.to_be_bytes());
        for q in ["base:allocation", "qemu:dirty-bitmap:x"] {
            req.extend_from_slice(&(q.len() as u32).to_be_bytes());
            req.extend_from_slice(q.as_bytes());
        }

        let (_, replies) = run(proto::OPT_SET_META_CONTEXT, &req, &mut neg);

        assert_eq!(replies.len(), 2);
        assert_eq!(replies[0].0, proto::REP_META_CONTEXT);
        assert_eq!(&replies[0].1[4..], b"base:allocation");
        assert_eq!(neg.meta_export.as_deref(), Some("d"));
    }

    #[test]
    fn set_meta_context_with_trailing_bytes_clears_the_selection() {
        let mut neg = Negotiation {
            structured: true,
            meta_export: Some("d".into()),
            ..Default::default()
        };
        let req = [0, 0, 0, 1, b'd', 0, 0, 0, 0, 0xff];

        let (_, replies) = run(proto::OPT_SET_META_CONTEXT, &req, &mut neg);

        assert_eq!(replies[0].0, proto::REP_ERR_INVALID);
        assert_eq!(neg.meta_export, None);
    }

    #[test]
    fn unknown_option_is_unsupported() {
        let (outcome, replies) = run(77, &[], &mut Negotiation::default());

        assert_eq!(outcome, OptionOutcome::Continue);
        assert_eq!(replies[0].0, proto::REP_ERR_UNSUP);
    }
}
