//! Small helpers over `syn` shared by the signature and body analyses.

use proc_macro2::Span;
use syn::ext::IdentExt;

pub(super) fn ident_name(id: &syn::Ident) -> String {
    id.unraw().to_string()
}

/// The single identifier of a path type (`Input`, `State<..>`), with its generic arguments.
pub(super) fn simple_type(
    ty: &syn::Type,
) -> Option<(&syn::Ident, Option<&syn::AngleBracketedGenericArguments>)> {
    let syn::Type::Path(tp) = ty else { return None };
    if tp.qself.is_some() {
        return None;
    }
    let seg = tp.path.segments.last()?;
    let args = match &seg.arguments {
        syn::PathArguments::None => None,
        syn::PathArguments::AngleBracketed(a) => Some(a),
        syn::PathArguments::Parenthesized(_) => return None,
    };
    Some((&seg.ident, args))
}

pub(super) fn strip_parens(e: &syn::Expr) -> &syn::Expr {
    match e {
        syn::Expr::Paren(p) => strip_parens(&p.expr),
        syn::Expr::Group(g) => strip_parens(&g.expr),
        other => other,
    }
}

pub(super) fn describe_span(span: Span) -> String {
    let s = span.start();
    if s.line == 0 {
        "the fn signature".into()
    } else {
        format!("line {}", s.line)
    }
}
