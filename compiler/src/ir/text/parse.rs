//! The nom parser of the generic MLIR syntax tpu-mlir writes (top and tpu dialects).
//!
//! Parsing runs in two steps: the text is read into raw syntax (ops with SSA names and
//! unresolved location references), then values are resolved, types checked and location
//! aliases (defined at the end of the file) turned into layer names.

use super::float::FloatSem;
use super::{ParseError, UNRANKED_DIM};
use crate::ir::{Attr, Attrs, ElemType, Func, Module, Op, Quant, TensorType, Value, ValueId};
use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{char as ch, digit1, hex_digit1, one_of};
use nom::combinator::{opt, recognize};
use nom::error::ErrorKind;
use nom::sequence::{pair, tuple};
use std::collections::HashMap;

/// A syntax error: where (the rest of the input) and what was expected there.
#[derive(Debug, Clone)]
struct PErr<'a> {
    at: &'a str,
    expected: String,
}

impl<'a> nom::error::ParseError<&'a str> for PErr<'a> {
    fn from_error_kind(input: &'a str, kind: ErrorKind) -> Self {
        let expected = match kind {
            ErrorKind::Digit => "digits",
            ErrorKind::HexDigit => "hexadecimal digits",
            ErrorKind::Char | ErrorKind::Tag | ErrorKind::OneOf => "a different character",
            _ => kind.description(),
        };
        PErr { at: input, expected: expected.to_string() }
    }
    fn append(_: &'a str, _: ErrorKind, other: Self) -> Self {
        other
    }
    /// Keep the error that got furthest; at the same place, list both expectations.
    fn or(self, other: Self) -> Self {
        match self.at.len().cmp(&other.at.len()) {
            std::cmp::Ordering::Less => self,
            std::cmp::Ordering::Greater => other,
            std::cmp::Ordering::Equal if self.expected == other.expected => self,
            std::cmp::Ordering::Equal => {
                PErr { at: self.at, expected: format!("{} or {}", other.expected, self.expected) }
            }
        }
    }
}

type R<'a, T> = nom::IResult<&'a str, T, PErr<'a>>;

fn fail<'a, T>(at: &'a str, expected: impl Into<String>) -> R<'a, T> {
    Err(nom::Err::Error(PErr { at, expected: expected.into() }))
}

/// Maximum nesting of dictionaries and locations (guards the stack against hostile input).
const MAX_DEPTH: usize = 32;

// ---------------------------------------------------------------------------------------------
// Raw syntax
// ---------------------------------------------------------------------------------------------

/// A location expression as written, before alias resolution.
#[derive(Debug, Clone)]
enum LocExpr<'a> {
    Unknown,
    Name(String),
    /// `#alias` with the position of the reference
    Alias(&'a str, &'a str),
    Fused(Vec<LocExpr<'a>>),
}

/// An attribute value as written (dictionaries still nested).
#[derive(Debug, Clone)]
enum PAttr {
    Plain(Attr),
    Dict(Vec<(String, PAttr)>),
    Unit,
}

#[derive(Debug)]
struct OperandRef<'a> {
    pos: &'a str,
    name: &'a str,
    index: Option<usize>,
}

#[derive(Debug)]
struct RawOp<'a> {
    pos: &'a str,
    /// `%name` or `%name:N` before `=`
    results: Option<(&'a str, Option<usize>)>,
    kind: String,
    operands: Vec<OperandRef<'a>>,
    attrs: Vec<(String, PAttr)>,
    in_types: Vec<TensorType>,
    out_types: Vec<TensorType>,
    loc: LocExpr<'a>,
}

#[derive(Debug)]
struct RawArg<'a> {
    pos: &'a str,
    name: &'a str,
    ty: TensorType,
    loc: LocExpr<'a>,
}

#[derive(Debug)]
struct RawFunc<'a> {
    args: Vec<RawArg<'a>>,
    result_types: Vec<TensorType>,
    sig_pos: &'a str,
    ops: Vec<RawOp<'a>>,
    ret_pos: &'a str,
    returns: Vec<OperandRef<'a>>,
    ret_types: Vec<TensorType>,
}

#[derive(Debug)]
struct RawModule<'a> {
    aliases: Vec<(&'a str, &'a str, LocExpr<'a>)>,
    name: String,
    attrs_pos: &'a str,
    attrs: Vec<(String, PAttr)>,
    func: RawFunc<'a>,
}

// ---------------------------------------------------------------------------------------------
// Lexemes
// ---------------------------------------------------------------------------------------------

/// Skip whitespace and `//` comments.
fn ws(mut i: &str) -> &str {
    loop {
        let t = i.trim_start();
        match t.strip_prefix("//") {
            Some(rest) => i = rest.find('\n').map(|p| &rest[p..]).unwrap_or(""),
            None => return t,
        }
    }
}

/// A punctuation token after optional whitespace.
fn sym<'a>(i: &'a str, s: &'static str) -> R<'a, ()> {
    let i = ws(i);
    match tag::<_, _, PErr>(s)(i) {
        Ok((r, _)) => Ok((r, ())),
        Err(_) => fail(i, format!("'{s}'")),
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '.' || c == '-'
}

/// A keyword: the word followed by a non-identifier character.
fn kw<'a>(i: &'a str, word: &'static str) -> R<'a, ()> {
    let i = ws(i);
    match i.strip_prefix(word) {
        Some(r) if !r.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.') => Ok((r, ())),
        _ => fail(i, format!("'{word}'")),
    }
}

/// A bare identifier (`main`, `round_mode`, `module.chip`).
fn ident(i: &str) -> R<'_, &str> {
    let i = ws(i);
    match recognize(pair(
        take_while1::<_, _, PErr>(|c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(is_ident_char),
    ))(i)
    {
        Ok(r) => Ok(r),
        Err(_) => fail(i, "an identifier"),
    }
}

/// A string literal with MLIR escapes (`\"`, `\\`, `\n`, `\t`, `\XX`).
fn string_lit(i: &str) -> R<'_, String> {
    let i = ws(i);
    let Some(body) = i.strip_prefix('"') else {
        return fail(i, "a string literal");
    };
    let mut bytes = Vec::new();
    let mut it = body.char_indices();
    while let Some((p, c)) = it.next() {
        match c {
            '"' => return Ok((&body[p + 1..], String::from_utf8_lossy(&bytes).into_owned())),
            '\n' => break,
            '\\' => {
                let rest = &body[p + 1..];
                let mut two = rest.chars();
                match (two.next(), two.next()) {
                    (Some('"'), _) => {
                        bytes.push(b'"');
                        it.next();
                    }
                    (Some('\\'), _) => {
                        bytes.push(b'\\');
                        it.next();
                    }
                    (Some('n'), _) => {
                        bytes.push(b'\n');
                        it.next();
                    }
                    (Some('t'), _) => {
                        bytes.push(b'\t');
                        it.next();
                    }
                    (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => {
                        let v = u8::from_str_radix(&rest[..2], 16).unwrap_or(0);
                        bytes.push(v);
                        it.next();
                        it.next();
                    }
                    _ => return fail(&body[p..], "a valid escape sequence"),
                }
            }
            _ => {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    fail(i, "a closing '\"' on the same line")
}

/// A numeric literal as written.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
    /// hexadecimal bit pattern (an integer, or a float's bits when the type is a float)
    Hex(u64),
}

fn number(i: &str) -> R<'_, Num> {
    let i = ws(i);
    let hex: R<&str> = recognize(tuple((opt(one_of("+-")), tag("0x"), hex_digit1)))(i);
    if let Ok((r, text)) = hex {
        let neg = text.starts_with('-');
        let digits = text.trim_start_matches(['+', '-']).trim_start_matches("0x");
        return match u64::from_str_radix(digits, 16) {
            Ok(v) if !neg => Ok((r, Num::Hex(v))),
            Ok(v) => match i64::try_from(v) {
                Ok(x) => Ok((r, Num::Int(-x))),
                Err(_) => fail(i, "a number in the 64-bit range"),
            },
            Err(_) => fail(i, "a number in the 64-bit range"),
        };
    }
    let dec: R<&str> = recognize(tuple((
        opt(one_of("+-")),
        digit1,
        opt(pair(ch('.'), opt(digit1))),
        opt(tuple((one_of("eE"), opt(one_of("+-")), digit1))),
    )))(i);
    match dec {
        Ok((r, text)) => {
            if text.contains(['.', 'e', 'E']) {
                match text.parse::<f64>() {
                    Ok(v) => Ok((r, Num::Float(v))),
                    Err(_) => fail(i, "a float literal"),
                }
            } else {
                match text.parse::<i64>() {
                    Ok(v) => Ok((r, Num::Int(v))),
                    Err(_) => fail(i, "an integer in the i64 range"),
                }
            }
        }
        Err(_) => fail(i, "a number"),
    }
}

fn num_f64(n: Num) -> f64 {
    match n {
        Num::Int(v) => v as f64,
        Num::Float(v) => v,
        Num::Hex(b) => f64::from_bits(b),
    }
}

/// A comma-separated list up to (and including) `close`; `item` parses one element.
fn list<'a, T>(mut i: &'a str, close: &'static str, mut item: impl FnMut(&'a str) -> R<'a, T>) -> R<'a, Vec<T>> {
    let mut out = Vec::new();
    if let Ok((r, _)) = sym(i, close) {
        return Ok((r, out));
    }
    loop {
        let (r, v) = item(i)?;
        out.push(v);
        i = r;
        if let Ok((r, _)) = sym(i, ",") {
            i = r;
            continue;
        }
        return match sym(i, close) {
            Ok((r, _)) => Ok((r, out)),
            Err(_) => fail(ws(i), format!("',' or '{close}'")),
        };
    }
}

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

fn elem_name(i: &str) -> R<'_, &str> {
    match take_while1::<_, _, PErr>(|c: char| c.is_ascii_alphanumeric())(i) {
        Ok(r) => Ok(r),
        Err(_) => fail(i, "an element type"),
    }
}

fn elem_type(i: &str) -> R<'_, ElemType> {
    let (r, name) = elem_name(i)?;
    match ElemType::from_mlir_name(name) {
        Some(e) => Ok((r, e)),
        None => {
            fail(i, "an element type (f32, f16, bf16, i8, si8, ui8, i16, si16, ui16, i32, si32, ui32, i64, si64, i1)")
        }
    }
}

/// `!quant.calibrated<f32<min:max>>` or `!quant.uniform<i8:f32, scale[:zp]>`.
fn quant_type(i: &str) -> R<'_, (ElemType, Quant)> {
    if let Some(r) = i.strip_prefix("!quant.calibrated<") {
        let (r, elem) = elem_type(r)?;
        let (r, _) = sym(r, "<")?;
        let (r, min) = number(r)?;
        let (r, _) = sym(r, ":")?;
        let (r, max) = number(r)?;
        let (r, _) = sym(r, ">")?;
        let (r, _) = sym(r, ">")?;
        return Ok((r, (elem, Quant::Calibrated { min: num_f64(min), max: num_f64(max) })));
    }
    if let Some(r) = i.strip_prefix("!quant.uniform<") {
        let (r2, storage) = elem_name(r)?;
        let (signed, bits) = match storage.split_at(1) {
            ("i", b) => (true, b.parse::<u8>().ok()),
            ("u", b) => (false, b.parse::<u8>().ok()),
            _ => (true, None),
        };
        let Some(bits) = bits.filter(|b| (1..=64).contains(b)) else {
            return fail(r, "a storage type like i8 or u8");
        };
        let (r3, _) = sym(r2, ":")?;
        let (r4, expressed) = elem_name(ws(r3))?;
        if expressed != "f32" {
            return fail(ws(r3), "the expressed type f32");
        }
        if sym(r4, ":").is_ok() {
            return fail(ws(r4), "',' (per-axis quantized types are not supported)");
        }
        let (r5, _) = sym(r4, ",")?;
        let (r6, scale) = number(r5)?;
        let (r7, zp) = match sym(r6, ":") {
            Ok((r, _)) => match number(r)? {
                (r, Num::Int(z)) => (r, z),
                _ => return fail(ws(r), "an integer zero point"),
            },
            Err(_) => (r6, 0),
        };
        let (r8, _) = sym(r7, ">")?;
        let elem = match (signed, bits) {
            (true, 16) => ElemType::SI16,
            (false, 16) => ElemType::UI16,
            (true, 32) => ElemType::SI32,
            (false, 32) => ElemType::UI32,
            (true, _) => ElemType::SI8,
            (false, _) => ElemType::UI8,
        };
        return Ok((r8, (elem, Quant::Uniform { signed, bits, scale: num_f64(scale), zero_point: zp })));
    }
    fail(i, "'!quant.calibrated<' or '!quant.uniform<'")
}

/// A value type: `none` or `tensor<...>`.
fn tensor_type(i: &str) -> R<'_, TensorType> {
    let i = ws(i);
    if let Ok((r, _)) = kw(i, "none") {
        return Ok((r, TensorType::None));
    }
    let Some(mut r) = i.strip_prefix("tensor<") else {
        return fail(i, "a type ('tensor<...>' or 'none')");
    };
    let mut shape = Vec::new();
    if let Some(rest) = r.strip_prefix("*x") {
        shape.push(UNRANKED_DIM);
        r = rest;
    } else {
        while r.starts_with(|c: char| c.is_ascii_digit()) {
            let (rest, d) = digit1::<_, PErr>(r)?;
            let Ok(d) = d.parse::<usize>() else {
                return fail(r, "a dimension that fits in 64 bits");
            };
            shape.push(d);
            match rest.strip_prefix('x') {
                Some(rest) => r = rest,
                None => return fail(rest, "'x' after a dimension"),
            }
        }
        if r.starts_with('?') {
            return fail(r, "a static dimension (dynamic shapes are not supported)");
        }
    }
    let (r, elem, quant) = if r.starts_with('!') {
        let (r, (e, q)) = quant_type(r)?;
        (r, e, Some(q))
    } else {
        let (r, e) = elem_type(r)?;
        (r, e, None)
    };
    let (r, _) = sym(r, ">")?;
    Ok((r, TensorType::Tensor { shape, elem, quant }))
}

fn type_list(i: &str) -> R<'_, Vec<TensorType>> {
    let (r, _) = sym(i, "(")?;
    list(r, ")", tensor_type)
}

// ---------------------------------------------------------------------------------------------
// Attributes
// ---------------------------------------------------------------------------------------------

/// An attribute or dictionary key: bare identifier or string.
fn attr_key(i: &str) -> R<'_, String> {
    let i = ws(i);
    if i.starts_with('"') {
        return string_lit(i);
    }
    match ident(i) {
        Ok((r, k)) => Ok((r, k.to_string())),
        Err(_) => fail(i, "an attribute name"),
    }
}

/// The `: type` suffix of a numeric attribute, if any.
fn type_suffix(i: &str) -> R<'_, Option<&str>> {
    match sym(i, ":") {
        Ok((r, _)) => {
            let r = ws(r);
            match elem_name(r) {
                Ok((r2, t)) if t.starts_with(|c: char| c.is_ascii_alphabetic()) => Ok((r2, Some(t))),
                _ => fail(r, "an attribute type such as i64 or f64"),
            }
        }
        Err(_) => Ok((i, None)),
    }
}

fn is_float_type(t: &str) -> bool {
    matches!(t, "f64" | "f32" | "f16" | "bf16")
}

/// A number with optional type suffix, as an `Attr`.
fn numeric_attr(i: &str) -> R<'_, Attr> {
    let (r, n) = number(i)?;
    let (r, ty) = type_suffix(r)?;
    let ty = ty.unwrap_or("");
    let attr = match n {
        Num::Float(v) => Attr::Float(FloatSem::from_type(ty).round(v), ty.to_string()),
        Num::Int(v) if is_float_type(ty) => Attr::Float(FloatSem::from_type(ty).round(v as f64), ty.to_string()),
        Num::Int(v) => Attr::Int(v, ty.to_string()),
        Num::Hex(b) if is_float_type(ty) => match FloatSem::from_type(ty).value_of_bits(b) {
            Some(v) => Attr::Float(v, ty.to_string()),
            None => return fail(ws(i), "a bit pattern that fits the float type"),
        },
        Num::Hex(b) => match i64::try_from(b) {
            Ok(v) => Attr::Int(v, ty.to_string()),
            Err(_) => return fail(ws(i), "an integer in the i64 range"),
        },
    };
    Ok((r, attr))
}

/// One element of an array attribute.
#[derive(Debug)]
enum Elem {
    Int(i64),
    Float(f64),
    Str(String),
}

fn array_elem(i: &str) -> R<'_, Elem> {
    let i = ws(i);
    if i.starts_with('"') {
        let (r, s) = string_lit(i)?;
        return Ok((r, Elem::Str(s)));
    }
    if let Ok((r, _)) = kw(i, "true") {
        return Ok((r, Elem::Int(1)));
    }
    if let Ok((r, _)) = kw(i, "false") {
        return Ok((r, Elem::Int(0)));
    }
    match numeric_attr(i) {
        Ok((r, Attr::Int(v, _))) => Ok((r, Elem::Int(v))),
        Ok((r, Attr::Float(v, _))) => Ok((r, Elem::Float(v))),
        Ok(_) | Err(_) => fail(i, "an array element (number or string)"),
    }
}

fn array_attr(i: &str) -> R<'_, Attr> {
    let start = ws(i);
    let (r, _) = sym(i, "[")?;
    let (r, elems) = list(r, "]", array_elem)?;
    let all_int = elems.iter().all(|e| matches!(e, Elem::Int(_)));
    let all_num = elems.iter().all(|e| matches!(e, Elem::Int(_) | Elem::Float(_)));
    let all_str = elems.iter().all(|e| matches!(e, Elem::Str(_)));
    let attr = if all_int {
        Attr::IntArray(elems.iter().map(|e| if let Elem::Int(v) = e { *v } else { 0 }).collect())
    } else if all_num {
        Attr::FloatArray(
            elems
                .iter()
                .map(|e| match e {
                    Elem::Int(v) => *v as f64,
                    Elem::Float(v) => *v,
                    Elem::Str(_) => 0.0,
                })
                .collect(),
        )
    } else if all_str {
        Attr::StrArray(elems.into_iter().map(|e| if let Elem::Str(s) = e { s } else { String::new() }).collect())
    } else {
        return fail(start, "an array of only numbers or only strings");
    };
    Ok((r, attr))
}

/// `#dialect<kind value>`
fn enum_attr(i: &str) -> R<'_, Attr> {
    let i = ws(i);
    let Some(r) = i.strip_prefix('#') else {
        return fail(i, "'#'");
    };
    let (r, dialect) = match ident(r) {
        Ok(x) => x,
        Err(_) => return fail(r, "a dialect name"),
    };
    let Some(r) = r.strip_prefix('<') else {
        return fail(r, "'<' (only enum attributes like #tpu<round_mode HalfUp> are supported)");
    };
    let (r, kind) = ident(r)?;
    let (r, value) = ident(r)?;
    let (r, _) = sym(r, ">")?;
    Ok((r, Attr::Enum { dialect: dialect.to_string(), kind: kind.to_string(), value: value.to_string() }))
}

fn attr_value(i: &str, depth: usize) -> R<'_, PAttr> {
    let i = ws(i);
    if depth > MAX_DEPTH {
        return fail(i, "less deeply nested attributes");
    }
    match i.chars().next() {
        Some('"') => string_lit(i).map(|(r, s)| (r, PAttr::Plain(Attr::Str(s)))),
        Some('[') => array_attr(i).map(|(r, a)| (r, PAttr::Plain(a))),
        Some('{') => attr_dict(i, depth + 1).map(|(r, d)| (r, PAttr::Dict(d))),
        Some('#') => enum_attr(i).map(|(r, a)| (r, PAttr::Plain(a))),
        Some('t') | Some('f') => alt((
            |s| kw(s, "true").map(|(r, _)| (r, PAttr::Plain(Attr::Bool(true)))),
            |s| kw(s, "false").map(|(r, _)| (r, PAttr::Plain(Attr::Bool(false)))),
        ))(i),
        Some(c) if c.is_ascii_digit() || c == '-' || c == '+' => numeric_attr(i).map(|(r, a)| (r, PAttr::Plain(a))),
        _ => fail(i, "an attribute value"),
    }
}

/// `{key = value, unit_key, ...}`
fn attr_dict(i: &str, depth: usize) -> R<'_, Vec<(String, PAttr)>> {
    let (r, _) = sym(i, "{")?;
    list(r, "}", |s| {
        let (r, k) = attr_key(s)?;
        match sym(r, "=") {
            Ok((r, _)) => {
                let (r, v) = attr_value(r, depth)?;
                Ok((r, (k, v)))
            }
            Err(_) => Ok((r, (k, PAttr::Unit))),
        }
    })
}

/// Flatten nested dictionaries into `outer_inner` keys.
fn flatten(prefix: &str, entries: Vec<(String, PAttr)>, out: &mut Attrs) {
    for (k, v) in entries {
        let key = if prefix.is_empty() { k } else { format!("{prefix}_{k}") };
        match v {
            PAttr::Plain(a) => {
                out.insert(key, a);
            }
            PAttr::Unit => {
                out.insert(key, Attr::Bool(true));
            }
            PAttr::Dict(d) => flatten(&key, d, out),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Locations
// ---------------------------------------------------------------------------------------------

fn loc_body(i: &str, depth: usize) -> R<'_, LocExpr<'_>> {
    let i = ws(i);
    if depth > MAX_DEPTH {
        return fail(i, "less deeply nested locations");
    }
    if let Ok((r, _)) = kw(i, "unknown") {
        return Ok((r, LocExpr::Unknown));
    }
    if let Some(r) = i.strip_prefix('#') {
        let (r, name) = match take_while1::<_, _, PErr>(is_ident_char)(r) {
            Ok(x) => x,
            Err(_) => return fail(r, "a location alias name"),
        };
        return Ok((r, LocExpr::Alias(name, i)));
    }
    if i.starts_with('"') {
        let (mut r, name) = string_lit(i)?;
        // file:line:col location
        if let Ok((r2, _)) = tuple((|s| sym(s, ":"), number, |s| sym(s, ":"), number))(r) {
            return Ok((r2, LocExpr::Name(name)));
        }
        // name location with a child location
        if let Ok((r2, _)) = sym(r, "(") {
            let (r3, _child) = loc_body(r2, depth + 1)?;
            let (r3, _) = sym(r3, ")")?;
            r = r3;
        }
        return Ok((r, LocExpr::Name(name)));
    }
    if let Ok((mut r, _)) = kw(i, "fused") {
        if let Ok((r2, _)) = sym(r, "<") {
            let (r2, _) = attr_value(r2, depth + 1)?;
            let (r2, _) = sym(r2, ">")?;
            r = r2;
        }
        let (r, _) = sym(r, "[")?;
        let (r, parts) = list(r, "]", |s| loc_body(s, depth + 1))?;
        return Ok((r, LocExpr::Fused(parts)));
    }
    if let Ok((r, _)) = kw(i, "callsite") {
        let (r, _) = sym(r, "(")?;
        let (r, callee) = loc_body(r, depth + 1)?;
        let (r, _) = kw(r, "at")?;
        let (r, _) = loc_body(r, depth + 1)?;
        let (r, _) = sym(r, ")")?;
        return Ok((r, callee));
    }
    fail(i, "a location ('unknown', '#alias', a string, 'fused[...]')")
}

/// `loc(...)`
fn loc(i: &str) -> R<'_, LocExpr<'_>> {
    let (r, _) = kw(i, "loc")?;
    let (r, _) = sym(r, "(")?;
    let (r, l) = loc_body(r, 0)?;
    let (r, _) = sym(r, ")")?;
    Ok((r, l))
}

fn opt_loc(i: &str) -> R<'_, LocExpr<'_>> {
    if kw(i, "loc").is_ok() {
        loc(i)
    } else {
        Ok((i, LocExpr::Unknown))
    }
}

/// `#name = loc(...)`
fn alias_def(i: &str) -> R<'_, (&str, &str, LocExpr<'_>)> {
    let i = ws(i);
    let Some(r) = i.strip_prefix('#') else {
        return fail(i, "'#'");
    };
    let (r, name) = match take_while1::<_, _, PErr>(is_ident_char)(r) {
        Ok(x) => x,
        Err(_) => return fail(r, "an alias name"),
    };
    let (r, _) = sym(r, "=")?;
    let (r, l) = loc(r)?;
    Ok((r, (name, i, l)))
}

fn aliases(mut i: &str) -> R<'_, Vec<(&str, &str, LocExpr<'_>)>> {
    let mut out = Vec::new();
    while ws(i).starts_with('#') {
        let (r, a) = alias_def(i)?;
        out.push(a);
        i = r;
    }
    Ok((i, out))
}

// ---------------------------------------------------------------------------------------------
// Ops, function, module
// ---------------------------------------------------------------------------------------------

/// `%name` (SSA name without the `%`).
fn ssa_name(i: &str) -> R<'_, &str> {
    let i = ws(i);
    let Some(r) = i.strip_prefix('%') else {
        return fail(i, "a value ('%name')");
    };
    match take_while1::<_, _, PErr>(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '.' || c == '-')(
        r,
    ) {
        Ok(x) => Ok(x),
        Err(_) => fail(r, "a value name"),
    }
}

fn operand(i: &str) -> R<'_, OperandRef<'_>> {
    let pos = ws(i);
    let (r, name) = ssa_name(i)?;
    if let Some(r2) = r.strip_prefix('#') {
        let (r3, d) = match digit1::<_, PErr>(r2) {
            Ok(x) => x,
            Err(_) => return fail(r2, "a result number"),
        };
        let Ok(idx) = d.parse::<usize>() else {
            return fail(r2, "a small result number");
        };
        return Ok((r3, OperandRef { pos, name, index: Some(idx) }));
    }
    Ok((r, OperandRef { pos, name, index: None }))
}

fn op(i: &str) -> R<'_, RawOp<'_>> {
    let pos = ws(i);
    let mut r = pos;
    let mut results = None;
    if r.starts_with('%') {
        let (r2, name) = ssa_name(r)?;
        let (r2, count) = match sym(r2, ":") {
            Ok((r3, _)) => {
                let r3 = ws(r3);
                match digit1::<_, PErr>(r3) {
                    Ok((r4, d)) => match d.parse::<usize>() {
                        Ok(n) if n > 0 => (r4, Some(n)),
                        _ => return fail(r3, "a positive result count"),
                    },
                    Err(_) => return fail(r3, "a result count"),
                }
            }
            Err(_) => (r2, None),
        };
        let (r2, _) = sym(r2, "=")?;
        results = Some((name, count));
        r = r2;
    }
    let (r, kind) = match string_lit(r) {
        Ok(x) => x,
        Err(_) => return fail(ws(r), "an op ('\"dialect.Name\"(...)') or 'return'"),
    };
    let (r, _) = sym(r, "(")?;
    let (r, operands) = list(r, ")", operand)?;
    let (r, attrs) = if ws(r).starts_with('{') { attr_dict(r, 0)? } else { (r, Vec::new()) };
    let (r, _) = sym(r, ":")?;
    let (r, in_types) = type_list(r)?;
    let (r, _) = sym(r, "->")?;
    let (r, out_types) = if ws(r).starts_with('(') {
        type_list(r)?
    } else {
        let (r, t) = tensor_type(r)?;
        (r, vec![t])
    };
    let (r, loc) = opt_loc(r)?;
    Ok((r, RawOp { pos, results, kind, operands, attrs, in_types, out_types, loc }))
}

fn func_arg(i: &str) -> R<'_, RawArg<'_>> {
    let pos = ws(i);
    let (r, name) = ssa_name(i)?;
    let (r, _) = sym(r, ":")?;
    let (r, ty) = tensor_type(r)?;
    let (r, loc) = opt_loc(r)?;
    Ok((r, RawArg { pos, name, ty, loc }))
}

fn symbol_name(i: &str) -> R<'_, String> {
    let i = ws(i);
    let Some(r) = i.strip_prefix('@') else {
        return fail(i, "'@name'");
    };
    if r.starts_with('"') {
        return string_lit(r);
    }
    match take_while1::<_, _, PErr>(is_ident_char)(r) {
        Ok((r, n)) => Ok((r, n.to_string())),
        Err(_) => fail(r, "a symbol name"),
    }
}

fn func(i: &str) -> R<'_, RawFunc<'_>> {
    let (r, _) = kw(i, "func.func")?;
    let (r, _name) = symbol_name(r)?;
    let (r, _) = sym(r, "(")?;
    let (r, args) = list(r, ")", func_arg)?;
    let sig_pos = ws(r);
    let (r, result_types) = match sym(r, "->") {
        Ok((r, _)) => {
            if ws(r).starts_with('(') {
                type_list(r)?
            } else {
                let (r, t) = tensor_type(r)?;
                (r, vec![t])
            }
        }
        Err(_) => (r, Vec::new()),
    };
    let (mut r, _) = sym(r, "{")?;
    let mut ops = Vec::new();
    while kw(r, "return").is_err() {
        let (r2, o) = op(r)?;
        ops.push(o);
        r = r2;
    }
    let ret_pos = ws(r);
    let (r, _) = kw(r, "return")?;
    let (r, returns, ret_types) = if ws(r).starts_with('%') {
        let mut rets = Vec::new();
        let mut r = r;
        loop {
            let (r2, o) = operand(r)?;
            rets.push(o);
            r = r2;
            match sym(r, ",") {
                Ok((r2, _)) => r = r2,
                Err(_) => break,
            }
        }
        let (r, _) = sym(r, ":")?;
        let (mut r, first) = tensor_type(r)?;
        let mut types = vec![first];
        while let Ok((r2, _)) = sym(r, ",") {
            let (r3, t) = tensor_type(r2)?;
            types.push(t);
            r = r3;
        }
        (r, rets, types)
    } else {
        (r, Vec::new(), Vec::new())
    };
    let (r, _) = opt_loc(r)?;
    let (r, _) = match sym(r, "}") {
        Ok(x) => x,
        Err(_) => return fail(ws(r), "'}' closing the function (only one block is supported)"),
    };
    let (r, _) = opt_loc(r)?;
    Ok((r, RawFunc { args, result_types, sig_pos, ops, ret_pos, returns, ret_types }))
}

fn module_text(i: &str) -> R<'_, RawModule<'_>> {
    let (r, mut defs) = aliases(i)?;
    let (r, _) = kw(r, "module")?;
    let (r, name) = if ws(r).starts_with('@') { symbol_name(r)? } else { (r, String::new()) };
    let attrs_pos = ws(r);
    let (r, attrs) = match kw(r, "attributes") {
        Ok((r, _)) => attr_dict(r, 0)?,
        Err(_) => (r, Vec::new()),
    };
    let (r, _) = sym(r, "{")?;
    let (r, f) = func(r)?;
    let (r, _) = match sym(r, "}") {
        Ok(x) => x,
        Err(_) => return fail(ws(r), "'}' closing the module (only one function is supported)"),
    };
    let (r, _) = opt_loc(r)?;
    let (r, more) = aliases(r)?;
    defs.extend(more);
    let r = ws(r);
    if !r.is_empty() {
        return fail(r, "the end of the file or a '#loc' alias definition");
    }
    Ok((r, RawModule { aliases: defs, name, attrs_pos, attrs, func: f }))
}

// ---------------------------------------------------------------------------------------------
// Building the IR
// ---------------------------------------------------------------------------------------------

/// Position (1-based line and column) of a suffix `at` of `text`.
fn position(text: &str, at: &str) -> (usize, usize) {
    let offset = text.len().saturating_sub(at.len());
    let mut off = offset.min(text.len());
    while !text.is_char_boundary(off) {
        off -= 1;
    }
    let before = &text[..off];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

fn error_at(text: &str, at: &str, msg: String) -> ParseError {
    let (line, column) = position(text, at);
    ParseError { line, column, msg }
}

/// Resolve a location to one name per component (`""` for unknown).
fn loc_names(l: &LocExpr, defs: &HashMap<&str, &LocExpr>, depth: usize, text: &str) -> Result<Vec<String>, ParseError> {
    match l {
        LocExpr::Unknown => Ok(vec![String::new()]),
        LocExpr::Name(n) => Ok(vec![n.clone()]),
        LocExpr::Alias(name, pos) => {
            if depth > MAX_DEPTH {
                return Err(error_at(text, pos, format!("location alias #{name} refers to itself")));
            }
            match defs.get(name) {
                Some(d) => loc_names(d, defs, depth + 1, text),
                None => Err(error_at(text, pos, format!("undefined location alias #{name}"))),
            }
        }
        LocExpr::Fused(parts) => {
            let mut out = Vec::new();
            for p in parts {
                out.extend(loc_names(p, defs, depth + 1, text)?);
            }
            Ok(out)
        }
    }
}

fn type_text(t: &TensorType) -> String {
    super::print::type_str(t)
}

fn build(text: &str, raw: RawModule) -> Result<Module, ParseError> {
    let mut defs: HashMap<&str, &LocExpr> = HashMap::new();
    for (name, pos, l) in &raw.aliases {
        if defs.insert(name, l).is_some() {
            return Err(error_at(text, pos, format!("location alias #{name} defined twice")));
        }
    }
    let name_of = |l: &LocExpr| loc_names(l, &defs, 0, text);

    let mut attrs = Attrs::new();
    let mut flat = Attrs::new();
    flatten("", raw.attrs, &mut flat);
    for (k, v) in flat {
        match k.strip_prefix("module.") {
            Some(short) => {
                attrs.insert(short.to_string(), v);
            }
            None => {
                return Err(error_at(text, raw.attrs_pos, format!("module attribute '{k}' lacks the 'module.' prefix")))
            }
        }
    }

    let rf = raw.func;
    let mut func = Func::default();
    let mut ssa: HashMap<&str, Vec<ValueId>> = HashMap::new();
    for a in &rf.args {
        let name = name_of(&a.loc)?.into_iter().next().unwrap_or_default();
        let v = func.add_value(name, a.ty.clone());
        func.args.push(v);
        if ssa.insert(a.name, vec![v]).is_some() {
            return Err(error_at(text, a.pos, format!("value %{} defined twice", a.name)));
        }
    }

    let resolve = |ssa: &HashMap<&str, Vec<ValueId>>, o: &OperandRef| -> Result<ValueId, ParseError> {
        let Some(vals) = ssa.get(o.name) else {
            return Err(error_at(text, o.pos, format!("use of undefined value %{}", o.name)));
        };
        match (o.index, vals.len()) {
            (None, 1) => Ok(vals[0]),
            (None, n) => Err(error_at(text, o.pos, format!("%{} has {n} results: use %{}#<index>", o.name, o.name))),
            (Some(k), n) if k < n => Ok(vals[k]),
            (Some(k), n) => Err(error_at(text, o.pos, format!("%{}#{k} out of range: the op has {n} results", o.name))),
        }
    };
    let check_types =
        |values: &[Value], ops: &[ValueId], types: &[TensorType], refs: &[OperandRef], what: &str, pos: &str| {
            if ops.len() != types.len() {
                return Err(error_at(text, pos, format!("{} {what}s but {} types", ops.len(), types.len())));
            }
            for ((&v, t), o) in ops.iter().zip(types).zip(refs) {
                if &values[v].ty != t {
                    return Err(error_at(
                        text,
                        o.pos,
                        format!(
                            "%{} has type {} at its definition but {} here",
                            o.name,
                            type_text(&values[v].ty),
                            type_text(t)
                        ),
                    ));
                }
            }
            Ok(())
        };

    for ro in &rf.ops {
        let mut operands = Vec::with_capacity(ro.operands.len());
        for o in &ro.operands {
            operands.push(resolve(&ssa, o)?);
        }
        check_types(&func.values, &operands, &ro.in_types, &ro.operands, "operand", ro.pos)?;
        let n_results = ro.out_types.len();
        match ro.results {
            Some((_, Some(n))) if n != n_results => {
                return Err(error_at(text, ro.pos, format!("{n} results declared but {n_results} result types")))
            }
            Some((_, None)) if n_results != 1 => {
                return Err(error_at(text, ro.pos, format!("one result named but {n_results} result types")))
            }
            None if n_results != 0 => {
                return Err(error_at(text, ro.pos, format!("{n_results} result types but no result names")))
            }
            _ => {}
        }
        let names = name_of(&ro.loc)?;
        let mut results = Vec::with_capacity(n_results);
        for (k, t) in ro.out_types.iter().enumerate() {
            let name = names.get(k).cloned().unwrap_or_default();
            results.push(func.add_value(name, t.clone()));
        }
        if let Some((name, _)) = ro.results {
            if ssa.insert(name, results.clone()).is_some() {
                return Err(error_at(text, ro.pos, format!("value %{name} defined twice")));
            }
        }
        let mut op_attrs = Attrs::new();
        flatten("", ro.attrs.clone(), &mut op_attrs);
        func.ops.push(Op { kind: ro.kind.clone(), operands, results, attrs: op_attrs });
    }

    let mut returns = Vec::with_capacity(rf.returns.len());
    for o in &rf.returns {
        returns.push(resolve(&ssa, o)?);
    }
    check_types(&func.values, &returns, &rf.ret_types, &rf.returns, "returned value", rf.ret_pos)?;
    if rf.result_types != rf.ret_types {
        return Err(error_at(
            text,
            rf.sig_pos,
            "the function's result types differ from the types of its return".to_string(),
        ));
    }
    func.returns = returns;
    Ok(Module { name: raw.name, attrs, func })
}

/// Parse a whole module.
pub(super) fn parse_module(text: &str) -> Result<Module, ParseError> {
    match module_text(text) {
        Ok((_, raw)) => build(text, raw),
        Err(nom::Err::Error(e)) | Err(nom::Err::Failure(e)) => {
            Err(error_at(text, e.at, format!("expected {}", e.expected)))
        }
        Err(nom::Err::Incomplete(_)) => Err(error_at(text, "", "unexpected end of input".to_string())),
    }
}
