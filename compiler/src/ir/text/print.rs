//! The printer: MLIR generic op syntax with a trailing table of location aliases, as tpu-mlir
//! writes its `.mlir` files.

use super::float::{format_float, FloatSem};
use super::UNRANKED_DIM;
use crate::ir::{Attr, Attrs, Func, Module, Quant, TensorType, ValueId};
use std::collections::HashMap;
use std::fmt::Write;

/// Location aliases (`#locN = loc(...)`) in order of first use.
#[derive(Default)]
struct LocTable {
    /// body of each alias, index 0 is `#loc1`
    defs: Vec<String>,
    by_body: HashMap<String, usize>,
}

impl LocTable {
    /// The alias (`#locN`) for a location body, allocated on first use.
    fn alias(&mut self, body: String) -> String {
        let n = match self.by_body.get(&body) {
            Some(&n) => n,
            None => {
                self.defs.push(body.clone());
                self.by_body.insert(body, self.defs.len());
                self.defs.len()
            }
        };
        format!("#loc{n}")
    }

    /// The location reference for one value name (`#loc` for unnamed values).
    fn for_name(&mut self, name: &str) -> String {
        if name.is_empty() {
            "#loc".to_string()
        } else {
            self.alias(format!("\"{}\"", escape(name)))
        }
    }

    /// The location of an op with the given result names (fused for several named results).
    fn for_names(&mut self, names: &[&str]) -> String {
        if names.len() <= 1 || names.iter().all(|n| n.is_empty()) {
            return self.for_name(names.first().copied().unwrap_or(""));
        }
        let parts: Vec<String> = names.iter().map(|n| self.for_name(n)).collect();
        self.alias(format!("fused[{}]", parts.join(", ")))
    }
}

/// Escape a string literal body the way MLIR does (printable ASCII kept, the rest as `\XX`).
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\{b:02X}");
            }
        }
    }
    out
}

fn is_bare_ident(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '$' || ch == '.')
}

fn attr_key(k: &str) -> String {
    if is_bare_ident(k) {
        k.to_string()
    } else {
        format!("\"{}\"", escape(k))
    }
}

/// Spell a tensor type (`tensor<1x3xf32>`, `none`, quantized forms).
pub(super) fn type_str(ty: &TensorType) -> String {
    match ty {
        TensorType::None => "none".to_string(),
        TensorType::Tensor { shape, elem, quant } => {
            let mut s = String::from("tensor<");
            if shape.len() == 1 && shape[0] == UNRANKED_DIM {
                s.push_str("*x");
            } else {
                for d in shape {
                    let _ = write!(s, "{d}x");
                }
            }
            match quant {
                None => s.push_str(elem.mlir_name()),
                Some(Quant::Calibrated { min, max }) => {
                    let _ = write!(
                        s,
                        "!quant.calibrated<{}<{}:{}>>",
                        elem.mlir_name(),
                        format_float(*min, FloatSem::F64),
                        format_float(*max, FloatSem::F64)
                    );
                }
                Some(Quant::Uniform { signed, bits, scale, zero_point }) => {
                    let _ = write!(
                        s,
                        "!quant.uniform<{}{}:f32, {}",
                        if *signed { 'i' } else { 'u' },
                        bits,
                        format_float(*scale, FloatSem::F64)
                    );
                    if *zero_point != 0 {
                        let _ = write!(s, ":{zero_point}");
                    }
                    s.push('>');
                }
            }
            s.push('>');
            s
        }
    }
}

/// Spell an attribute value.
fn attr_str(a: &Attr) -> String {
    match a {
        Attr::Bool(b) => b.to_string(),
        Attr::Int(v, ty) if ty.is_empty() => v.to_string(),
        Attr::Int(v, ty) => format!("{v} : {ty}"),
        Attr::Float(v, ty) if ty.is_empty() => format_float(*v, FloatSem::F64),
        Attr::Float(v, ty) => format!("{} : {ty}", format_float(*v, FloatSem::from_type(ty))),
        Attr::Str(s) => format!("\"{}\"", escape(s)),
        Attr::IntArray(v) => list(v.iter().map(|x| x.to_string())),
        Attr::FloatArray(v) => list(v.iter().map(|x| format_float(*x, FloatSem::F64))),
        Attr::StrArray(v) => list(v.iter().map(|x| format!("\"{}\"", escape(x)))),
        Attr::Enum { dialect, kind, value } => format!("#{dialect}<{kind} {value}>"),
    }
}

fn list(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(", "))
}

/// The prefix of attributes printed as one dictionary attribute for an op kind.
fn dict_prefix(kind: &str) -> Option<&'static str> {
    match kind {
        "tpu.GenericCpu" => Some("param"),
        _ => None,
    }
}

/// `{a = 1 : i64, b = ...}` or the empty string for no attributes.
fn attr_dict(attrs: &Attrs, key_prefix: &str, fold: Option<&str>) -> String {
    if attrs.is_empty() {
        return String::new();
    }
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut folded: Vec<String> = Vec::new();
    let fold_prefix = fold.map(|p| format!("{p}_"));
    for (k, v) in attrs {
        if let Some(rest) = fold_prefix.as_deref().and_then(|p| k.strip_prefix(p)) {
            folded.push(format!("{} = {}", attr_key(rest), attr_str(v)));
            continue;
        }
        entries
            .push((format!("{key_prefix}{k}"), format!("{} = {}", attr_key(&format!("{key_prefix}{k}")), attr_str(v))));
    }
    if let (Some(p), false) = (fold, folded.is_empty()) {
        entries.push((p.to_string(), format!("{} = {{{}}}", attr_key(p), folded.join(", "))));
        entries.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let body: Vec<String> = entries.into_iter().map(|(_, s)| s).collect();
    format!("{{{}}}", body.join(", "))
}

/// SSA spelling of every value: `%argN`, `%N` or `%N#k`.
fn ssa_names(func: &Func) -> Vec<String> {
    let mut names: Vec<String> = (0..func.values.len()).map(|v| format!("%undefined{v}")).collect();
    for (i, &a) in func.args.iter().enumerate() {
        if let Some(n) = names.get_mut(a) {
            *n = format!("%arg{i}");
        }
    }
    let mut counter = 0usize;
    for op in &func.ops {
        match op.results.len() {
            0 => continue,
            1 => {
                if let Some(n) = names.get_mut(op.results[0]) {
                    *n = format!("%{counter}");
                }
            }
            _ => {
                for (k, &r) in op.results.iter().enumerate() {
                    if let Some(n) = names.get_mut(r) {
                        *n = format!("%{counter}#{k}");
                    }
                }
            }
        }
        counter += 1;
    }
    names
}

/// Print the module (see the module docs for the exact layout).
pub(super) fn print_module(m: &Module) -> String {
    let f = &m.func;
    let names = ssa_names(f);
    let name_of = |v: ValueId| names.get(v).cloned().unwrap_or_else(|| format!("%undefined{v}"));
    let ty_of = |v: ValueId| f.values.get(v).map(|x| type_str(&x.ty)).unwrap_or_else(|| "none".into());
    let vname = |v: ValueId| f.values.get(v).map(|x| x.name.as_str()).unwrap_or("");
    let mut locs = LocTable::default();
    let mut out = String::from("#loc = loc(unknown)\n");

    let _ = write!(out, "module @{}", m.name);
    if !m.attrs.is_empty() {
        let _ = write!(out, " attributes {}", attr_dict(&m.attrs, "module.", None));
    }
    out.push_str(" {\n  func.func @main(");
    let args: Vec<String> = f
        .args
        .iter()
        .map(|&a| {
            let loc = if vname(a).is_empty() { "unknown".to_string() } else { locs.for_name(vname(a)) };
            format!("{}: {} loc({loc})", name_of(a), ty_of(a))
        })
        .collect();
    out.push_str(&args.join(", "));
    out.push(')');
    let ret_types: Vec<String> = f.returns.iter().map(|&r| ty_of(r)).collect();
    match ret_types.len() {
        0 => {}
        1 => {
            let _ = write!(out, " -> {}", ret_types[0]);
        }
        _ => {
            let _ = write!(out, " -> ({})", ret_types.join(", "));
        }
    }
    out.push_str(" {\n");

    for op in &f.ops {
        out.push_str("    ");
        match op.results.len() {
            0 => {}
            1 => {
                let _ = write!(out, "{} = ", name_of(op.results[0]));
            }
            n => {
                let first = name_of(op.results[0]);
                let base = first.split('#').next().unwrap_or(&first).to_string();
                let _ = write!(out, "{base}:{n} = ");
            }
        }
        let operands: Vec<String> = op.operands.iter().map(|&v| name_of(v)).collect();
        let _ = write!(out, "\"{}\"({})", escape(&op.kind), operands.join(", "));
        let dict = attr_dict(&op.attrs, "", dict_prefix(&op.kind));
        if !dict.is_empty() {
            out.push(' ');
            out.push_str(&dict);
        }
        let in_types: Vec<String> = op.operands.iter().map(|&v| ty_of(v)).collect();
        let out_types: Vec<String> = op.results.iter().map(|&v| ty_of(v)).collect();
        let res = if out_types.len() == 1 { out_types[0].clone() } else { format!("({})", out_types.join(", ")) };
        let result_names: Vec<&str> = op.results.iter().map(|&r| vname(r)).collect();
        let loc = locs.for_names(&result_names);
        let _ = writeln!(out, " : ({}) -> {res} loc({loc})", in_types.join(", "));
    }

    out.push_str("    return");
    if !f.returns.is_empty() {
        let rets: Vec<String> = f.returns.iter().map(|&v| name_of(v)).collect();
        let _ = write!(out, " {} : {}", rets.join(", "), ret_types.join(", "));
    }
    out.push_str(" loc(#loc)\n  } loc(#loc)\n} loc(#loc)\n");
    for (i, body) in locs.defs.iter().enumerate() {
        let _ = writeln!(out, "#loc{} = loc({body})", i + 1);
    }
    // tpuc-opt ends its files with an empty line
    out.push('\n');
    out
}
