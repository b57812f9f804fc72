//! `#[derive(Trace)]` for lowpause.
//!
//! The derive writes an `unsafe impl lowpause::Trace` that visits every field, in declaration order,
//! and computes `NEEDS_TRACE` as the OR of the fields' constants, so a type with no GC reference
//! anywhere inside goes to no-scan spans and is never traced.
//!
//! `#[trace(leaf)]` on the type additionally implements `lowpause::Leaf`, after checking that every
//! field is `Leaf` itself (a field that is not fails to compile, naming the field's type). A leaf
//! type holds no GC reference, so its `trace` visits nothing.
//!
//! `#[trace(bound = "T: Leaf")]` replaces the default `T: Trace` bound added for every type
//! parameter, for generic types whose fields need something else of their parameters.
//!
//! The impl is sound because it visits *every* field: the only way to hide a field from the
//! collector is to write an `unsafe impl Trace` by hand.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote};
use syn::{parse_macro_input, parse_quote, Data, DeriveInput, Fields, GenericParam, WherePredicate};

/// Derives `lowpause::Trace` (and, with `#[trace(leaf)]`, `lowpause::Leaf`).
#[proc_macro_derive(Trace, attributes(trace))]
pub fn derive_trace(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(input) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

struct Options {
    leaf: bool,
    bound: Option<Vec<WherePredicate>>,
}

fn parse_options(input: &DeriveInput) -> syn::Result<Options> {
    let mut opts = Options { leaf: false, bound: None };
    for attr in &input.attrs {
        if !attr.path().is_ident("trace") {
            continue;
        }
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("leaf") {
                opts.leaf = true;
                Ok(())
            } else if meta.path.is_ident("bound") {
                let s: syn::LitStr = meta.value()?.parse()?;
                let preds =
                    s.parse_with(syn::punctuated::Punctuated::<WherePredicate, syn::Token![,]>::parse_terminated)?;
                opts.bound = Some(preds.into_iter().collect());
                Ok(())
            } else {
                Err(meta.error("unknown trace option: expected `leaf` or `bound = \"...\"`"))
            }
        })?;
    }
    Ok(opts)
}

/// All field types of the item, in order, for the NEEDS_TRACE constant and the leaf check.
fn field_types(data: &Data) -> Vec<&syn::Type> {
    match data {
        Data::Struct(s) => s.fields.iter().map(|f| &f.ty).collect(),
        Data::Enum(e) => e.variants.iter().flat_map(|v| v.fields.iter().map(|f| &f.ty)).collect(),
        Data::Union(_) => Vec::new(),
    }
}

/// A pattern binding every field of `fields` by reference, and the list of bindings.
fn bind_fields(fields: &Fields) -> (TokenStream2, Vec<syn::Ident>) {
    match fields {
        Fields::Named(named) => {
            let names: Vec<_> = named.named.iter().map(|f| f.ident.clone().unwrap()).collect();
            // Bound by position: a name-derived binding would be `__f__x` for a field `_x` (a
            // non-snake-case warning in the user's crate) and invalid for a raw `r#type`.
            // The field's span stays on its binding, so errors point at the field.
            let binds: Vec<_> =
                names.iter().enumerate().map(|(i, n)| format_ident!("__f{}", i, span = n.span())).collect();
            (quote!({ #(#names: #binds),* }), binds)
        }
        Fields::Unnamed(unnamed) => {
            let binds: Vec<_> = (0..unnamed.unnamed.len()).map(|i| format_ident!("__f{}", i)).collect();
            (quote!(( #(#binds),* )), binds)
        }
        Fields::Unit => (quote!(), Vec::new()),
    }
}

fn expand(input: DeriveInput) -> syn::Result<TokenStream2> {
    if let Data::Union(u) = &input.data {
        return Err(syn::Error::new_spanned(
            u.union_token,
            "Trace cannot be derived for unions: the collector could not know which field is live",
        ));
    }
    let opts = parse_options(&input)?;
    let name = &input.ident;
    let krate = quote!(::lowpause);

    let mut generics = input.generics.clone();
    {
        let wc = generics.make_where_clause();
        match &opts.bound {
            Some(preds) => wc.predicates.extend(preds.iter().cloned()),
            None => {
                for p in &input.generics.params {
                    if let GenericParam::Type(t) = p {
                        let id = &t.ident;
                        if opts.leaf {
                            wc.predicates.push(parse_quote!(#id: #krate::Leaf));
                        } else {
                            wc.predicates.push(parse_quote!(#id: #krate::Trace));
                        }
                    }
                }
            }
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let tys = field_types(&input.data);

    // Visit every field. A leaf type has no GC reference, so it visits nothing; its fields are
    // still checked to be `Leaf` below.
    let trace_body = if opts.leaf {
        quote!()
    } else {
        match &input.data {
            Data::Struct(s) => {
                let (pat, binds) = bind_fields(&s.fields);
                quote! {
                    let #name #pat = self;
                    #( #krate::Trace::trace(#binds, __tracer); )*
                }
            }
            Data::Enum(e) => {
                let arms = e.variants.iter().map(|v| {
                    let vname = &v.ident;
                    let (pat, binds) = bind_fields(&v.fields);
                    quote! { #name::#vname #pat => { #( #krate::Trace::trace(#binds, __tracer); )* } }
                });
                quote! {
                    #[allow(unreachable_code)]
                    match self { #(#arms)* }
                }
            }
            Data::Union(_) => unreachable!(),
        }
    };

    let needs_trace =
        if opts.leaf { quote!(false) } else { quote!(false #( || <#tys as #krate::Trace>::NEEDS_TRACE )*) };

    let trace_impl = quote! {
        // SAFETY: the derived `trace` visits every field of every variant, so no GC reference the
        // value holds is hidden from the collector; NEEDS_TRACE is false only if no field needs
        // tracing (or, for `#[trace(leaf)]`, every field is checked to be `Leaf` below).
        unsafe impl #impl_generics #krate::Trace for #name #ty_generics #where_clause {
            const NEEDS_TRACE: bool = #needs_trace;
            #[inline]
            #[allow(unused_variables)]
            fn trace(&self, __tracer: &mut #krate::Tracer<'_>) {
                #trace_body
            }
        }
    };

    let leaf_impl = if opts.leaf {
        let checks = tys.iter().map(|ty| quote!(__assert_leaf::<#ty>();));
        quote! {
            // SAFETY: every field's type is checked to be `Leaf` by the function below, which does
            // not compile otherwise; so the type holds no GC reference anywhere inside.
            unsafe impl #impl_generics #krate::Leaf for #name #ty_generics #where_clause {}
            const _: () = {
                #[allow(dead_code)]
                fn __check_every_field_is_leaf #impl_generics () #where_clause {
                    fn __assert_leaf<__T: #krate::Leaf + ?Sized>() {}
                    #(#checks)*
                }
            };
        }
    } else {
        quote!()
    };

    Ok(quote! { #trace_impl #leaf_impl })
}
