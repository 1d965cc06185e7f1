//! FETCH (RFC 3501 6.4.5): `FETCH sequence-set (ALL / FULL / FAST / fetch-att /
//! "(" fetch-att *(SP fetch-att) ")")`, with body sections and partials.

use nom::bytes::complete::take_while1;
use nom::Parser;

use super::super::types::{
    CommandBody, FetchAttr, FetchItems, IString, Partial, Section, SectionPart, SectionText,
};
use super::lex::{
    ascii, astring, failure, must, number, nz_number, sequence_set, sp, upper, In, PErr, PResult,
};
use super::Reason;

/// The arguments of FETCH / UID FETCH, after the command name.
pub(super) fn fetch(i: In<'_>, uid: bool) -> PResult<'_, CommandBody<'_>> {
    let (i, ()) = sp(i)?;
    let (i, set) = must(Reason::BadSequenceSet, sequence_set).parse(i)?;
    let (i, ()) = sp(i)?;
    let (i, items) = fetch_items(i)?;
    Ok((i, CommandBody::Fetch { uid, set, items }))
}

fn fetch_items(i: In<'_>) -> PResult<'_, FetchItems<'_>> {
    if let Some(mut rest) = i.strip_prefix(b"(") {
        let mut attrs = Vec::new();
        loop {
            let (r, a) = fetch_att(rest)?;
            attrs.push(a);
            match r.first() {
                Some(b' ') => rest = &r[1..],
                Some(b')') => return Ok((&r[1..], FetchItems::Attrs(attrs))),
                _ => return failure(Reason::BadFetchAttribute),
            }
        }
    }
    let (rest, name) = att_name(i)?;
    let items = if name.eq_ignore_ascii_case(b"ALL") {
        FetchItems::All
    } else if name.eq_ignore_ascii_case(b"FAST") {
        FetchItems::Fast
    } else if name.eq_ignore_ascii_case(b"FULL") {
        FetchItems::Full
    } else {
        let (rest, a) = fetch_att(i)?;
        return Ok((rest, FetchItems::Attrs(vec![a])));
    };
    separator(rest, items)
}

/// A fetch attribute's name: letters, digits and dots (`RFC822.SIZE`, `BODY.PEEK`).
fn att_name(i: In<'_>) -> PResult<'_, &[u8]> {
    match take_while1::<_, _, PErr>(|b: u8| b.is_ascii_alphanumeric() || b == b'.').parse(i) {
        Ok(r) => Ok(r),
        Err(_) => failure(Reason::BadFetchAttribute),
    }
}

/// An attribute must end at SP, `)` or the end of the line.
fn separator<O>(i: In<'_>, out: O) -> PResult<'_, O> {
    match i.first() {
        None | Some(b' ' | b')' | b'\r' | b'\n') => Ok((i, out)),
        Some(_) => failure(Reason::BadFetchAttribute),
    }
}

pub(super) fn fetch_att(i: In<'_>) -> PResult<'_, FetchAttr<'_>> {
    let (rest, name) = att_name(i)?;
    let mut buf = [0u8; 16];
    let Some(upper) = upper(name, &mut buf) else {
        return failure(Reason::BadFetchAttribute);
    };
    let (rest, attr) = match upper {
        b"ENVELOPE" => (rest, FetchAttr::Envelope),
        b"FLAGS" => (rest, FetchAttr::Flags),
        b"INTERNALDATE" => (rest, FetchAttr::InternalDate),
        b"RFC822" => (rest, FetchAttr::Rfc822),
        b"RFC822.HEADER" => (rest, FetchAttr::Rfc822Header),
        b"RFC822.SIZE" => (rest, FetchAttr::Rfc822Size),
        b"RFC822.TEXT" => (rest, FetchAttr::Rfc822Text),
        b"BODYSTRUCTURE" => (rest, FetchAttr::BodyStructure),
        b"UID" => (rest, FetchAttr::Uid),
        b"BODY" if !rest.starts_with(b"[") => (rest, FetchAttr::Body),
        b"BODY" | b"BODY.PEEK" => {
            let peek = upper.len() > 4;
            let (rest, section) = section(rest)?;
            let (rest, partial) = if rest.starts_with(b"<") {
                let (r, p) = partial(rest)?;
                (r, Some(p))
            } else {
                (rest, None)
            };
            (
                rest,
                FetchAttr::BodySection {
                    peek,
                    section,
                    partial,
                },
            )
        }
        _ => return failure(Reason::BadFetchAttribute),
    };
    separator(rest, attr)
}

/// `section = "[" [section-spec] "]"`.
pub(super) fn section(i: In<'_>) -> PResult<'_, Section<'_>> {
    let Some(rest) = i.strip_prefix(b"[") else {
        return failure(Reason::BadSection);
    };
    let (rest, s) = section_spec(rest)?;
    match rest.strip_prefix(b"]") {
        Some(rest) => Ok((rest, s)),
        None => failure(Reason::BadSection),
    }
}

/// `section-spec = section-msgtext / (section-part ["." section-text])`, or nothing.
fn section_spec(i: In<'_>) -> PResult<'_, Section<'_>> {
    match i.first() {
        Some(b']') => Ok((i, Section::default())),
        Some(b'0'..=b'9') => {
            let (rest, part) = section_part(i)?;
            match rest.strip_prefix(b".") {
                Some(r) => {
                    let (r, text) = section_text(r, true)?;
                    Ok((
                        r,
                        Section {
                            part: Some(part),
                            text: Some(text),
                        },
                    ))
                }
                None => Ok((
                    rest,
                    Section {
                        part: Some(part),
                        text: None,
                    },
                )),
            }
        }
        _ => {
            let (rest, text) = section_text(i, false)?;
            Ok((
                rest,
                Section {
                    part: None,
                    text: Some(text),
                },
            ))
        }
    }
}

/// `section-part = nz-number *("." nz-number)`: stops before a `.` not followed by a digit.
fn section_part(i: In<'_>) -> PResult<'_, SectionPart<'_>> {
    let mut end = 0;
    loop {
        let (r, _) = must(Reason::BadSection, nz_number).parse(&i[end..])?;
        end = i.len() - r.len();
        match r {
            [b'.', b'0'..=b'9', ..] => end += 1,
            _ => return Ok((r, SectionPart::from_validated(ascii(&i[..end])))),
        }
    }
}

/// `section-text = section-msgtext / "MIME"` (MIME only after a part number).
fn section_text(i: In<'_>, after_part: bool) -> PResult<'_, SectionText<'_>> {
    let (rest, name) =
        match take_while1::<_, _, PErr>(|b: u8| b.is_ascii_alphabetic() || b == b'.').parse(i) {
            Ok(r) => r,
            Err(_) => return failure(Reason::BadSection),
        };
    let is = |s: &[u8]| name.eq_ignore_ascii_case(s);
    if is(b"HEADER") {
        Ok((rest, SectionText::Header))
    } else if is(b"TEXT") {
        Ok((rest, SectionText::Text))
    } else if is(b"MIME") && after_part {
        Ok((rest, SectionText::Mime))
    } else if is(b"HEADER.FIELDS") {
        let (rest, fields) = header_list(rest)?;
        Ok((rest, SectionText::HeaderFields(fields)))
    } else if is(b"HEADER.FIELDS.NOT") {
        let (rest, fields) = header_list(rest)?;
        Ok((rest, SectionText::HeaderFieldsNot(fields)))
    } else {
        failure(Reason::BadSection)
    }
}

/// `SP header-list`, `header-list = "(" header-fld-name *(SP header-fld-name) ")"`.
fn header_list(i: In<'_>) -> PResult<'_, Vec<IString<'_>>> {
    let (i, ()) = must(Reason::BadSection, sp).parse(i)?;
    let Some(mut rest) = i.strip_prefix(b"(") else {
        return failure(Reason::BadSection);
    };
    let mut fields = Vec::new();
    loop {
        let (r, f) = must(Reason::BadSection, astring).parse(rest)?;
        fields.push(f);
        match r.first() {
            Some(b' ') => rest = &r[1..],
            Some(b')') => return Ok((&r[1..], fields)),
            _ => return failure(Reason::BadSection),
        }
    }
}

/// `"<" number "." nz-number ">"`.
fn partial(i: In<'_>) -> PResult<'_, Partial> {
    let inner = |i| {
        let (i, _) = nom::bytes::complete::tag(&b"<"[..]).parse(i)?;
        let (i, offset) = number(i)?;
        let (i, _) = nom::bytes::complete::tag(&b"."[..]).parse(i)?;
        let (i, length) = nz_number(i)?;
        let (i, _) = nom::bytes::complete::tag(&b">"[..]).parse(i)?;
        Ok((i, Partial { offset, length }))
    };
    must(Reason::BadPartial, inner).parse(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(s: &str) -> Result<FetchAttr<'_>, Option<Reason>> {
        match fetch_att(s.as_bytes()) {
            Ok((b"", a)) => Ok(a),
            Ok(_) => Err(None),
            Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(e.reason),
            Err(nom::Err::Incomplete(_)) => Err(None),
        }
    }

    fn items(s: &str) -> Result<FetchItems<'_>, Option<Reason>> {
        match fetch_items(s.as_bytes()) {
            Ok((b"", a)) => Ok(a),
            Ok(_) => Err(None),
            Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(e.reason),
            Err(nom::Err::Incomplete(_)) => Err(None),
        }
    }

    fn sec<'a>(part: Option<&'a str>, text: Option<SectionText<'a>>) -> Section<'a> {
        Section {
            part: part.map(SectionPart::from_validated),
            text,
        }
    }

    fn body(peek: bool, section: Section<'_>, partial: Option<(u32, u32)>) -> FetchAttr<'_> {
        FetchAttr::BodySection {
            peek,
            section,
            partial: partial.map(|(offset, length)| Partial { offset, length }),
        }
    }

    #[test]
    fn simple_attributes_any_case() {
        for (s, a) in [
            ("ENVELOPE", FetchAttr::Envelope),
            ("flags", FetchAttr::Flags),
            ("InternalDate", FetchAttr::InternalDate),
            ("RFC822", FetchAttr::Rfc822),
            ("rfc822.header", FetchAttr::Rfc822Header),
            ("RFC822.SIZE", FetchAttr::Rfc822Size),
            ("RFC822.TEXT", FetchAttr::Rfc822Text),
            ("BODY", FetchAttr::Body),
            ("BODYSTRUCTURE", FetchAttr::BodyStructure),
            ("uid", FetchAttr::Uid),
        ] {
            assert_eq!(att(s), Ok(a), "{s}");
        }
    }

    #[test]
    fn sections() {
        use SectionText as T;
        for (s, a) in [
            ("BODY[]", body(false, sec(None, None), None)),
            ("body.peek[]", body(true, sec(None, None), None)),
            (
                "BODY[HEADER]",
                body(false, sec(None, Some(T::Header)), None),
            ),
            ("BODY[TEXT]", body(false, sec(None, Some(T::Text)), None)),
            ("BODY[1]", body(false, sec(Some("1"), None), None)),
            ("BODY[1.2.3]", body(false, sec(Some("1.2.3"), None), None)),
            (
                "BODY[4.2.HEADER]",
                body(false, sec(Some("4.2"), Some(T::Header)), None),
            ),
            (
                "BODY[3.MIME]",
                body(false, sec(Some("3"), Some(T::Mime)), None),
            ),
            (
                "BODY[3.text]",
                body(false, sec(Some("3"), Some(T::Text)), None),
            ),
            ("BODY[10.20]", body(false, sec(Some("10.20"), None), None)),
            (
                "BODY.PEEK[HEADER.FIELDS (DATE FROM)]",
                body(
                    true,
                    sec(
                        None,
                        Some(T::HeaderFields(vec!["DATE".into(), "FROM".into()])),
                    ),
                    None,
                ),
            ),
            (
                "BODY[header.fields.not (\"X-Spam\" {4}\r\nX-Me)]",
                body(
                    false,
                    sec(
                        None,
                        Some(T::HeaderFieldsNot(vec!["X-Spam".into(), "X-Me".into()])),
                    ),
                    None,
                ),
            ),
            (
                "BODY[2.HEADER.FIELDS (Subject)]",
                body(
                    false,
                    sec(Some("2"), Some(T::HeaderFields(vec!["Subject".into()]))),
                    None,
                ),
            ),
            (
                "BODY[]<0.1024>",
                body(false, sec(None, None), Some((0, 1024))),
            ),
            (
                "BODY.PEEK[1.TEXT]<500.4294967295>",
                body(true, sec(Some("1"), Some(T::Text)), Some((500, u32::MAX))),
            ),
        ] {
            assert_eq!(att(s), Ok(a), "{s:?}");
        }
    }

    #[test]
    fn section_part_numbers_iterate() {
        let Ok(FetchAttr::BodySection { section, .. }) = att("BODY[1.22.333.MIME]") else {
            panic!()
        };
        let part = section.part.unwrap();
        assert_eq!(part.iter().collect::<Vec<_>>(), [1, 22, 333]);
    }

    #[test]
    fn malformed_attributes() {
        for (s, why) in [
            ("BOGUS", Reason::BadFetchAttribute),
            ("ENVELOPEX", Reason::BadFetchAttribute),
            ("FLAGS[", Reason::BadFetchAttribute),
            ("BODY.PEEK", Reason::BadSection),
            ("BODY[", Reason::BadSection),
            ("BODY[MIME]", Reason::BadSection),
            ("BODY[0]", Reason::BadSection),
            ("BODY[1.0]", Reason::BadSection),
            ("BODY[01]", Reason::BadSection),
            ("BODY[1.]", Reason::BadSection),
            ("BODY[1..2]", Reason::BadSection),
            ("BODY[HEADERS]", Reason::BadSection),
            ("BODY[HEADER.FIELDS]", Reason::BadSection),
            ("BODY[HEADER.FIELDS ()]", Reason::BadSection),
            ("BODY[HEADER.FIELDS (A B]", Reason::BadSection),
            ("BODY[HEADER.FIELDS(A)]", Reason::BadSection),
            ("BODY[TEXT.HEADER]", Reason::BadSection),
            ("BODY[]<0>", Reason::BadPartial),
            ("BODY[]<0.0>", Reason::BadPartial),
            ("BODY[]<x.1>", Reason::BadPartial),
            ("BODY[]<1.2", Reason::BadPartial),
            ("BODY[]<1.2>x", Reason::BadFetchAttribute),
            ("RFC822.BOGUS", Reason::BadFetchAttribute),
            ("", Reason::BadFetchAttribute),
            ("(", Reason::BadFetchAttribute),
        ] {
            assert_eq!(att(s), Err(Some(why)), "{s:?}");
        }
    }

    #[test]
    fn items_and_macros() {
        assert_eq!(items("ALL"), Ok(FetchItems::All));
        assert_eq!(items("fast"), Ok(FetchItems::Fast));
        assert_eq!(items("Full"), Ok(FetchItems::Full));
        assert_eq!(
            items("FLAGS"),
            Ok(FetchItems::Attrs(vec![FetchAttr::Flags]))
        );
        assert_eq!(
            items("(UID FLAGS BODY.PEEK[])"),
            Ok(FetchItems::Attrs(vec![
                FetchAttr::Uid,
                FetchAttr::Flags,
                body(true, sec(None, None), None)
            ]))
        );
        assert_eq!(items("(ALL)"), Err(Some(Reason::BadFetchAttribute)));
        assert_eq!(items("()"), Err(Some(Reason::BadFetchAttribute)));
        assert_eq!(items("(UID  FLAGS)"), Err(Some(Reason::BadFetchAttribute)));
        assert_eq!(items("(UID"), Err(Some(Reason::BadFetchAttribute)));
        assert_eq!(items("ALLX"), Err(Some(Reason::BadFetchAttribute)));
    }
}
