//! Surrogate arguments: `Surrogate::Name { param: value, .., spiking: bool }` as written in a
//! `spike(..)` or `surrogate(..)` call, checked against the surrogate's parameters.

use flexsn_ir::Surrogate;
use syn::spanned::Spanned;

use super::body::Analyzer;
use super::model::{AnalysisError, Instr, Reg, Result, SurrogateSpec};
use super::syntax::{ident_name, strip_parens};
use crate::funcs;

impl Analyzer<'_> {
    /// `Surrogate::Name`, `Surrogate::Name { field: value, .., spiking: bool }`.
    pub(super) fn surrogate(&mut self, e: &syn::Expr) -> Result<(SurrogateSpec, bool)> {
        let (path, fields) = match strip_parens(e) {
            syn::Expr::Path(p) if p.qself.is_none() => (&p.path, None),
            syn::Expr::Struct(s) if s.qself.is_none() => {
                if let Some(r) = &s.rest {
                    return Err(AnalysisError::new(
                        r.span(),
                        "`..` is not supported here: omitted fields take SpikingJelly's defaults",
                    )
                    .help("remove `..`"));
                }
                (&s.path, Some(&s.fields))
            }
            other => {
                return Err(AnalysisError::new(
                    other.span(),
                    "expected a surrogate such as `Surrogate::ATan { alpha: 2.0 }`",
                )
                .help(format!("surrogates: {}", Surrogate::NAMES.join(", "))));
            }
        };
        let segs: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        let n = segs.len();
        if n < 2 || segs[n - 2] != "Surrogate" {
            return Err(AnalysisError::new(
                path.span(),
                "expected a surrogate such as `Surrogate::ATan { alpha: 2.0 }`",
            )
            .help(format!(
                "write `Surrogate::Name`; surrogates: {}",
                Surrogate::NAMES.join(", ")
            )));
        }
        let sname = &segs[n - 1];
        let Some(&name) = Surrogate::NAMES.iter().find(|k| *k == sname) else {
            let last = path.segments.last().expect("n >= 2");
            let mut err =
                AnalysisError::new(last.ident.span(), format!("unknown surrogate `{sname}`"));
            err = err.help(
                match funcs::nearest(sname, Surrogate::NAMES.iter().copied()) {
                    Some(k) => format!(
                        "did you mean `{k}`? surrogates: {}",
                        Surrogate::NAMES.join(", ")
                    ),
                    None => format!("surrogates: {}", Surrogate::NAMES.join(", ")),
                },
            );
            return Err(err);
        };
        let defaults = Surrogate::default_for(name).expect("a known name");
        let allowed: Vec<&'static str> = defaults.params().iter().map(|(p, _)| *p).collect();
        let mut params: Vec<(&'static str, Reg)> = Vec::new();
        let mut spiking = true;
        if let Some(fields) = fields {
            for fv in fields {
                let syn::Member::Named(id) = &fv.member else {
                    return Err(AnalysisError::new(
                        fv.member.span(),
                        "surrogate parameters are named",
                    )
                    .help(format!(
                        "`{name}` takes: {}",
                        if allowed.is_empty() {
                            "no parameters".into()
                        } else {
                            allowed.join(", ")
                        }
                    )));
                };
                let field = ident_name(id);
                if field == "spiking" {
                    spiking = match strip_parens(&fv.expr) {
                        syn::Expr::Lit(syn::ExprLit {
                            lit: syn::Lit::Bool(b),
                            ..
                        }) => b.value,
                        other => {
                            return Err(AnalysisError::new(
                                other.span(),
                                "`spiking` must be `true` or `false`",
                            )
                            .help("`spiking: false` selects the smooth primitive form"));
                        }
                    };
                    continue;
                }
                let canonical = if field == "t_period" {
                    "T"
                } else {
                    field.as_str()
                };
                let Some(&pname) = allowed.iter().find(|p| **p == canonical) else {
                    let mut err = AnalysisError::new(
                        id.span(),
                        format!("surrogate `{name}` has no parameter `{field}`"),
                    );
                    let mut takes: Vec<&str> = allowed.clone();
                    takes.push("spiking");
                    err = err.help(match funcs::nearest(&field, takes.iter().copied()) {
                        Some(k) => {
                            format!("did you mean `{k}`? `{name}` takes: {}", takes.join(", "))
                        }
                        None => format!("`{name}` takes: {}", takes.join(", ")),
                    });
                    return Err(err);
                };
                if params.iter().any(|(p, _)| *p == pname) {
                    return Err(AnalysisError::new(
                        id.span(),
                        format!("parameter `{field}` is given twice"),
                    ));
                }
                let r = self.expr(&fv.expr)?;
                if !self.is_const[r] {
                    return Err(AnalysisError::new(
                        fv.expr.span(),
                        format!("surrogate parameter `{field}` must be a constant expression"),
                    )
                    .help("use literals and hyperparameters (`f32` arguments) only"));
                }
                params.push((pname, r));
            }
        }
        // Literal parameters are checked now, so that bad values are compile errors.
        if params
            .iter()
            .all(|(_, r)| matches!(self.program.instrs[*r].instr, Instr::Lit(_)))
        {
            let values: Vec<(&str, f64)> = params
                .iter()
                .map(|(p, r)| match self.program.instrs[*r].instr {
                    Instr::Lit(v) => (*p, v as f64),
                    _ => unreachable!("checked above"),
                })
                .collect();
            let s = Surrogate::from_name_and_params(name, &values)
                .map_err(|err| AnalysisError::new(e.span(), err.to_string()))?;
            if !spiking && !s.has_primitive() {
                return Err(AnalysisError::new(e.span(), format!("surrogate `{name}` has no smooth primitive form (SpikingJelly defines none)"))
                    .help("use it with `spike(x, ..)` (spiking)"));
            }
        }
        Ok((SurrogateSpec { name, params }, spiking))
    }
}
