//! ENVELOPE, BODYSTRUCTURE and FETCH items as plain trees, built both from what ironpost's
//! encoder was given (`ironpost_core::imap::encode`) and from what `imap-codec` parsed out
//! of the encoder's bytes, so the two can be compared for equality whatever string form
//! (atom, quoted, literal) the encoder chose.

use imap_codec::imap_types::body as cb;
use imap_codec::imap_types::core::{IString as CIString, NString as CNString};
use imap_codec::imap_types::envelope as ce;
use imap_codec::imap_types::fetch::{MessageDataItem, Section as CSection};
use ironpost_core::imap::encode as ie;
use ironpost_core::imap::{IString, Section, SectionText};

/// A value of the response grammar: NIL, a string, a number or a parenthesised list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V {
    Nil,
    S(Vec<u8>),
    N(u64),
    L(Vec<V>),
}

fn s(b: &[u8]) -> V {
    V::S(b.to_vec())
}

fn ns(o: &Option<IString<'_>>) -> V {
    o.as_ref().map_or(V::Nil, |v| s(v.as_bytes()))
}

fn cs(v: &CIString<'_>) -> V {
    V::S(v.clone().into_inner().into_owned())
}

fn cns(v: &CNString<'_>) -> V {
    v.0.as_ref().map_or(V::Nil, cs)
}

// ---------------------------------------------------------------------------------------
// From ironpost's encoder types

pub fn envelope(e: &ie::Envelope<'_>) -> V {
    let addrs = |a: &[ie::Address<'_>]| {
        V::L(
            a.iter()
                .map(|a| V::L(vec![ns(&a.name), ns(&a.adl), ns(&a.mailbox), ns(&a.host)]))
                .collect(),
        )
    };
    V::L(vec![
        ns(&e.date),
        ns(&e.subject),
        addrs(&e.from),
        addrs(&e.sender),
        addrs(&e.reply_to),
        addrs(&e.to),
        addrs(&e.cc),
        addrs(&e.bcc),
        ns(&e.in_reply_to),
        ns(&e.message_id),
    ])
}

fn params(p: &ie::Params<'_>) -> V {
    V::L(
        p.iter()
            .flat_map(|(k, v)| [s(k.as_bytes()), s(v.as_bytes())])
            .collect(),
    )
}

/// `md5` is `None` for a multipart (whose extension data has parameters instead).
fn extension(e: &ie::BodyExtension<'_>) -> Vec<V> {
    let dsp = e.disposition.as_ref().map_or(V::Nil, |d| {
        V::L(vec![s(d.kind.as_bytes()), params(&d.params)])
    });
    let lang = V::L(e.language.iter().map(|l| s(l.as_bytes())).collect());
    vec![dsp, lang, ns(&e.location)]
}

pub fn body_structure(b: &ie::BodyStructure<'_>, extended: bool) -> V {
    match b {
        ie::BodyStructure::Single { kind, fields, ext } => {
            let mut v = match kind {
                ie::SingleKind::Basic {
                    media_type,
                    subtype,
                } => vec![s(media_type.as_bytes()), s(subtype.as_bytes())],
                ie::SingleKind::Text { subtype, .. } => vec![s(b"TEXT"), s(subtype.as_bytes())],
                ie::SingleKind::Message { subtype, .. } => {
                    vec![s(b"MESSAGE"), s(subtype.as_bytes())]
                }
            };
            v.extend([
                params(&fields.params),
                ns(&fields.id),
                ns(&fields.description),
                s(fields.encoding.as_bytes()),
                V::N(fields.size.into()),
            ]);
            match kind {
                ie::SingleKind::Basic { .. } => {}
                ie::SingleKind::Text { lines, .. } => v.push(V::N((*lines).into())),
                ie::SingleKind::Message {
                    envelope: e,
                    body,
                    lines,
                    ..
                } => {
                    v.push(envelope(e));
                    v.push(body_structure(body, extended));
                    v.push(V::N((*lines).into()));
                }
            }
            if extended {
                v.push(ns(&ext.md5));
                v.extend(extension(ext));
            }
            V::L(v)
        }
        ie::BodyStructure::Multipart {
            parts,
            subtype,
            params: p,
            ext,
        } => {
            let mut v: Vec<V> = parts.iter().map(|p| body_structure(p, extended)).collect();
            v.push(s(subtype.as_bytes()));
            if extended {
                v.push(params(p));
                v.extend(extension(ext));
            }
            V::L(v)
        }
    }
}

/// A section as `(part numbers, text kind, field names)`.
pub type SectionV = (Vec<u32>, &'static str, Vec<Vec<u8>>);

pub fn section(sec: &Section<'_>) -> SectionV {
    let part: Vec<u32> = sec.part.as_ref().map_or(Vec::new(), |p| p.iter().collect());
    let (kind, names): (&'static str, &[IString<'_>]) = match &sec.text {
        None => ("", &[]),
        Some(SectionText::Header) => ("HEADER", &[]),
        Some(SectionText::Text) => ("TEXT", &[]),
        Some(SectionText::Mime) => ("MIME", &[]),
        Some(SectionText::HeaderFields(n)) => ("HEADER.FIELDS", n),
        Some(SectionText::HeaderFieldsNot(n)) => ("HEADER.FIELDS.NOT", n),
    };
    (
        part,
        kind,
        names.iter().map(|n| n.as_bytes().to_vec()).collect(),
    )
}

// ---------------------------------------------------------------------------------------
// From imap-codec's parse

pub fn codec_envelope(e: &ce::Envelope<'_>) -> V {
    let addrs = |a: &[ce::Address<'_>]| {
        V::L(
            a.iter()
                .map(|a| {
                    V::L(vec![
                        cns(&a.name),
                        cns(&a.adl),
                        cns(&a.mailbox),
                        cns(&a.host),
                    ])
                })
                .collect(),
        )
    };
    V::L(vec![
        cns(&e.date),
        cns(&e.subject),
        addrs(&e.from),
        addrs(&e.sender),
        addrs(&e.reply_to),
        addrs(&e.to),
        addrs(&e.cc),
        addrs(&e.bcc),
        cns(&e.in_reply_to),
        cns(&e.message_id),
    ])
}

fn codec_params(p: &[(CIString<'_>, CIString<'_>)]) -> V {
    V::L(p.iter().flat_map(|(k, v)| [cs(k), cs(v)]).collect())
}

/// `dsp lang loc` of extension data (ironpost always writes all three, so a missing one is
/// a mismatch, shown as a marker string).
fn codec_tail(d: &Option<cb::Disposition<'_>>) -> Vec<V> {
    let missing = || V::S(b"<missing>".to_vec());
    let Some(d) = d else {
        return vec![missing(), missing(), missing()];
    };
    let dsp = d
        .disposition
        .as_ref()
        .map_or(V::Nil, |(k, p)| V::L(vec![cs(k), codec_params(p)]));
    let Some(l) = &d.tail else {
        return vec![dsp, missing(), missing()];
    };
    let lang = V::L(l.language.iter().map(cs).collect());
    let loc = l.tail.as_ref().map_or_else(missing, |l| cns(&l.location));
    vec![dsp, lang, loc]
}

pub fn codec_body_structure(b: &cb::BodyStructure<'_>) -> V {
    match b {
        cb::BodyStructure::Single {
            body,
            extension_data,
        } => {
            let mut v = match &body.specific {
                cb::SpecificFields::Basic { r#type, subtype } => vec![cs(r#type), cs(subtype)],
                cb::SpecificFields::Text { subtype, .. } => vec![s(b"TEXT"), cs(subtype)],
                cb::SpecificFields::Message { .. } => vec![s(b"MESSAGE"), s(b"RFC822")],
            };
            let f = &body.basic;
            v.extend([
                codec_params(&f.parameter_list),
                cns(&f.id),
                cns(&f.description),
                cs(&f.content_transfer_encoding),
                V::N(f.size.into()),
            ]);
            match &body.specific {
                cb::SpecificFields::Basic { .. } => {}
                cb::SpecificFields::Text {
                    number_of_lines, ..
                } => v.push(V::N((*number_of_lines).into())),
                cb::SpecificFields::Message {
                    envelope,
                    body_structure,
                    number_of_lines,
                } => {
                    v.push(codec_envelope(envelope));
                    v.push(codec_body_structure(body_structure));
                    v.push(V::N((*number_of_lines).into()));
                }
            }
            if let Some(ext) = extension_data {
                v.push(cns(&ext.md5));
                v.extend(codec_tail(&ext.tail));
            }
            V::L(v)
        }
        cb::BodyStructure::Multi {
            bodies,
            subtype,
            extension_data,
        } => {
            let mut v: Vec<V> = bodies.as_ref().iter().map(codec_body_structure).collect();
            v.push(cs(subtype));
            if let Some(ext) = extension_data {
                v.push(codec_params(&ext.parameter_list));
                v.extend(codec_tail(&ext.tail));
            }
            V::L(v)
        }
    }
}

pub fn codec_section(sec: &Option<CSection<'_>>) -> SectionV {
    use imap_codec::imap_types::fetch::Part;
    let nums = |p: &Option<Part>| -> Vec<u32> {
        p.as_ref().map_or(Vec::new(), |p| {
            p.0.as_ref().iter().map(|n| n.get()).collect()
        })
    };
    let names =
        |n: &imap_codec::imap_types::core::Vec1<imap_codec::imap_types::core::AString<'_>>| {
            n.as_ref()
                .iter()
                .map(|a| AsRef::<[u8]>::as_ref(a).to_vec())
                .collect::<Vec<_>>()
        };
    match sec {
        None => (Vec::new(), "", Vec::new()),
        Some(CSection::Part(p)) => (nums(&Some(p.clone())), "", Vec::new()),
        Some(CSection::Header(p)) => (nums(p), "HEADER", Vec::new()),
        Some(CSection::Text(p)) => (nums(p), "TEXT", Vec::new()),
        Some(CSection::Mime(p)) => (nums(&Some(p.clone())), "MIME", Vec::new()),
        Some(CSection::HeaderFields(p, n)) => (nums(p), "HEADER.FIELDS", names(n)),
        Some(CSection::HeaderFieldsNot(p, n)) => (nums(p), "HEADER.FIELDS.NOT", names(n)),
    }
}

/// The string data of a FETCH content item (`BODY[...]`, `RFC822*`), `None` for NIL.
pub fn codec_nstring(n: &CNString<'_>) -> Option<Vec<u8>> {
    n.0.as_ref().map(|v| v.clone().into_inner().into_owned())
}

/// A short name of a parsed FETCH item, for messages.
pub fn item_name(i: &MessageDataItem<'_>) -> &'static str {
    match i {
        MessageDataItem::Body(_) => "BODY",
        MessageDataItem::BodyExt { .. } => "BODY[]",
        MessageDataItem::BodyStructure(_) => "BODYSTRUCTURE",
        MessageDataItem::Envelope(_) => "ENVELOPE",
        MessageDataItem::Flags(_) => "FLAGS",
        MessageDataItem::InternalDate(_) => "INTERNALDATE",
        MessageDataItem::Rfc822(_) => "RFC822",
        MessageDataItem::Rfc822Header(_) => "RFC822.HEADER",
        MessageDataItem::Rfc822Size(_) => "RFC822.SIZE",
        MessageDataItem::Rfc822Text(_) => "RFC822.TEXT",
        MessageDataItem::Uid(_) => "UID",
        _ => "other",
    }
}

/// Parses exactly one response with imap-codec; panics (with the bytes) if it is not one
/// whole, valid response.
pub fn parse_response(bytes: &[u8]) -> imap_codec::imap_types::response::Response<'_> {
    use imap_codec::decode::Decoder;
    match imap_codec::ResponseCodec::default().decode(bytes) {
        Ok((rest, r)) => {
            assert!(
                rest.is_empty(),
                "response followed by {} octets: {:?}",
                rest.len(),
                String::from_utf8_lossy(bytes)
            );
            r
        }
        Err(e) => panic!(
            "imap-codec cannot parse the response ({e:?}): {:?}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

/// A well-formedness check of one response line of ours, for what imap-codec will not parse
/// (BODYSTRUCTURE nested deeper than its parser's recursion limit of 8): ends with CRLF,
/// and before that parentheses balance outside strings, quoted strings hold no CR, LF or NUL
/// and escape only `"` and `\`, literals `{n}` CRLF are followed by exactly n octets
/// without NUL, and no CR, LF or NUL stands outside a literal.
pub fn check_wellformed(out: &[u8]) {
    let line = || String::from_utf8_lossy(out).into_owned();
    assert!(out.ends_with(b"\r\n"), "no CRLF at the end: {:?}", line());
    let end = out.len() - 2;
    let (mut i, mut depth) = (0usize, 0i64);
    while i < end {
        match out[i] {
            b'"' => {
                i += 1;
                loop {
                    assert!(i < end, "unterminated quoted string: {:?}", line());
                    match out[i] {
                        b'\\' => {
                            assert!(
                                i + 1 < end && matches!(out[i + 1], b'"' | b'\\'),
                                "bad escape: {:?}",
                                line()
                            );
                            i += 2;
                        }
                        b'"' => break,
                        b'\r' | b'\n' | 0 => {
                            panic!("CR, LF or NUL in a quoted string: {:?}", line())
                        }
                        _ => i += 1,
                    }
                }
                i += 1;
            }
            b'{' => {
                let close = out[i..end]
                    .iter()
                    .position(|&b| b == b'}')
                    .unwrap_or_else(|| panic!("unterminated literal: {:?}", line()));
                let digits = &out[i + 1..i + close];
                assert!(
                    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit),
                    "bad literal length: {:?}",
                    line()
                );
                let n: usize = std::str::from_utf8(digits).unwrap().parse().unwrap();
                let data = i + close + 3;
                assert!(
                    out[i + close + 1..].starts_with(b"\r\n") && data + n <= end,
                    "literal runs past the line: {:?}",
                    line()
                );
                assert!(
                    !out[data..data + n].contains(&0),
                    "NUL in a literal: {:?}",
                    line()
                );
                i = data + n;
            }
            b'(' => {
                depth += 1;
                i += 1;
            }
            b')' => {
                depth -= 1;
                assert!(depth >= 0, "unbalanced ')': {:?}", line());
                i += 1;
            }
            b'\r' | b'\n' | 0 => panic!("CR, LF or NUL outside a literal: {:?}", line()),
            _ => i += 1,
        }
    }
    assert_eq!(depth, 0, "unbalanced '(': {:?}", line());
}
